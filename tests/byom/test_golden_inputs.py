"""Golden-input synthesis and --inputs checks (edgekit.parity.inputs), and the safe_mode pre-scan."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.core.errors import InputError, UsageError
from edgekit.parity.inputs import load_inputs, parse_int_range, synthesise
from edgekit.parity.keras_model import unsafe_objects


def info(name, shape, dtype):
    return {"name": name, "shape": [None, *shape], "dtype": dtype}


def test_each_dtype_is_drawn_like_real_data():
    arrays, origin = synthesise([info("img", (4, 4, 3), "uint8"), info("ids", (7,), "int32"),
                                 info("x", (3,), "float32"), info("m", (2,), "bool"), info("q", (5,), "int8")],
                                int_ranges={"ids": (0, 30, "Embedding 'e' input_dim 30")})
    assert arrays["img"].dtype == np.uint8 and arrays["img"].min() < 10 and arrays["img"].max() > 245
    assert arrays["ids"].dtype == np.int32 and 0 <= arrays["ids"].min() and arrays["ids"].max() < 30
    assert arrays["x"].dtype == np.float32 and abs(float(arrays["x"].std()) - 1) < 0.2
    assert arrays["m"].dtype == np.bool_ and 0 < arrays["m"].mean() < 1
    assert arrays["q"].dtype == np.int8 and arrays["q"].min() < -100
    assert all(len(a) == 64 for a in arrays.values())
    assert origin["ids"] == "int32: uniform ids in [0, 30) (Embedding 'e' input_dim 30)"
    assert origin["img"] == "uint8: uniform 0..255"


def test_int_range_overrides_the_model_and_is_half_open():
    arrays, origin = synthesise([info("ids", (50,), "int64")], int_ranges={"ids": (0, 1000)}, int_range=(5, 7))
    assert set(np.unique(arrays["ids"])) == {5, 6} and "--int-range" in origin["ids"]


def test_integer_input_without_a_known_range_is_refused():
    with pytest.raises(InputError, match="no known valid range.*--int-range LO,HI"):
        synthesise([info("ids", (3,), "int32")])


def test_floats_follow_calibration_statistics():
    mean, std = np.array([100.0, -5.0]), np.array([2.0, 0.0])
    arrays, origin = synthesise([info("x", (2,), "float32")], stats={"x": (mean, std)}, stats_origin="c.npz")
    assert abs(arrays["x"][:, 0].mean() - 100) < 1 and (arrays["x"][:, 1] == -5).all()
    assert "calibration data's per-element mean and std (c.npz)" in origin["x"]


def test_seeded():
    a, _ = synthesise([info("x", (3,), "float32")])
    b, _ = synthesise([info("x", (3,), "float32")])
    np.testing.assert_array_equal(a["x"], b["x"])


@pytest.mark.parametrize("text, msg", [("1", "two integers"), ("a,b", "two integers"), ("3,3", "LO < HI")])
def test_bad_int_range(text, msg):
    with pytest.raises(UsageError, match=msg):
        parse_int_range(text)


def test_int_range_that_does_not_fit_the_dtype():
    with pytest.raises(UsageError, match="does not fit input 'ids'"):
        synthesise([info("ids", (3,), "int16")], int_range=(0, 100000))


def test_load_inputs_checks_keys_dtype_shape_rows(tmp_path):
    infos = [info("a", (2,), "float32"), info("b", (3,), "int32")]
    ok = {"a": np.zeros((4, 2), np.float32), "b": np.zeros((4, 3), np.int32)}
    np.savez(tmp_path / "ok.npz", **ok)
    assert {k: v.shape for k, v in load_inputs(tmp_path / "ok.npz", infos).items()} == {"a": (4, 2), "b": (4, 3)}
    cases = {"keys": ({"a": ok["a"], "c": ok["b"]}, r"missing \['b'\], extra \['c'\]"),
             "dtype": ({**ok, "b": ok["b"].astype(np.int64)}, "'b' has the wrong dtype; got: int64; expected: int32"),
             "shape": ({**ok, "a": np.zeros((4, 3), np.float32)}, r"'a' has the wrong shape; got: \(4, 3\)"),
             "rows": ({**ok, "b": np.zeros((5, 3), np.int32)}, "different row counts")}
    for name, (arrays, msg) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(InputError, match=msg):
            load_inputs(tmp_path / f"{name}.npz", infos)


def test_unsafe_objects_names_lambda_and_unregistered_classes():
    config = {"class_name": "Functional", "module": "keras.src.models.functional", "config": {"name": "m", "layers": [
        {"class_name": "Dense", "module": "keras.layers", "config": {"name": "d"}},
        {"class_name": "Lambda", "module": "keras.layers", "config": {"name": "twice", "function": {
            "class_name": "__lambda__", "config": {"code": "..."}}}},
        {"class_name": "Scale", "module": None, "registered_name": "pkg>Scale", "config": {"name": "s"}}]}}
    assert unsafe_objects(config, registered=set()) == [
        "Lambda layer 'twice' (Python code)", "custom class 'pkg>Scale' in layer 's' (not registered in this process)"]
    assert unsafe_objects(config, registered={"pkg>Scale"}) == ["Lambda layer 'twice' (Python code)"]

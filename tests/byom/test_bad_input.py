"""A Keras source refused in one line, exit 2, nothing written (``edgekit export``)."""

from __future__ import annotations

import numpy as np
import pytest
from _cli import cli, listing


def _lambda_keras(path, marker):
    """A .keras whose Lambda layer 'double' creates ``marker`` when it runs."""
    import keras

    m = str(marker)
    inp = keras.Input((4,), name="x")
    out = keras.layers.Lambda(lambda t: (open(m, "a").close(), t * 2)[1], name="double")(inp)  # noqa: SIM115
    keras.Model(inp, keras.layers.Dense(1)(out)).save(path)
    marker.unlink(missing_ok=True)  # building traced the lambda once


def _custom_keras(path):
    import keras

    @keras.saving.register_keras_serializable(package="byomtest")
    class Triple(keras.layers.Layer):
        def call(self, x):
            return x * 3

    keras.Sequential([keras.Input((4,), name="x"), Triple(name="triple"), keras.layers.Dense(1)]).save(path)
    keras.saving.get_custom_objects().pop("byomtest>Triple")  # a fresh process would not know it


def _free_dim_keras(path):
    import keras

    ids = keras.Input((None,), dtype="int32", name="ids")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(ids))
    keras.Model(ids, keras.layers.Dense(1)(x)).save(path)


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-keras")
    _lambda_keras(root / "lam.keras", root / "pwned")
    _custom_keras(root / "custom.keras")
    _free_dim_keras(root / "free.keras")
    np.savez(root / "x_extra.npz", x=np.zeros((8, 4), np.float32), y=np.zeros((8, 4), np.float32))
    np.savez(root / "x_dtype.npz", x=np.zeros((8, 4), np.float64))
    np.savez(root / "x_shape.npz", x=np.zeros((8, 5), np.float32))
    np.savez(root / "x_missing.npz", z=np.zeros((8, 4), np.float32))
    (root / "fake.keras").write_text("not a zip")
    return root


def _case(root, keras_file):
    text, _ = keras_file("text_classifier")
    return {
        "lambda": ([root / "lam.keras"], ["Lambda layer 'double'", "--unsafe"]),
        "custom_class": ([root / "custom.keras"], ["custom class 'byomtest>Triple' in layer 'triple'",
                                                   "register_keras_serializable"]),
        "free_dim": ([root / "free.keras"], ["input 'ids' has an unknown size on axis 1", "--input-shape ids="]),
        "input_shape_unknown_input": ([root / "free.keras", "--input-shape", "tokens=12"],
                                      ["names an input the model does not have", "['ids']"]),
        "input_shape_wrong_rank": ([root / "free.keras", "--input-shape", "ids=3x4"], ["does not fit input 'ids'"]),
        "not_a_keras_zip": ([root / "fake.keras"], ["not a Keras .keras file"]),
        "inputs_extra_key": ([text, "--inputs", root / "x_extra.npz"],
                             ["missing ['token_ids'], extra ['x', 'y']"]),
        "inputs_missing_key": ([text, "--inputs", root / "x_missing.npz"], ["missing ['token_ids']"]),
    }


CASES = ("lambda", "custom_class", "free_dim", "input_shape_unknown_input", "input_shape_wrong_rank",
         "not_a_keras_zip", "inputs_extra_key", "inputs_missing_key")


@pytest.mark.parametrize("case", CASES)
def test_refused_in_one_line_exit_2_nothing_written(case, bad_models, keras_file, tmp_path, capsys):
    argv, needles = _case(bad_models, keras_file)[case]
    before = listing(bad_models)
    code, out, err = cli(["export", *argv, "--formats", "tflite", "--out", tmp_path / "out"], capsys)
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    assert not (tmp_path / "out").exists() and listing(tmp_path) == set()
    assert listing(bad_models) == before
    assert not (bad_models / "pwned").exists(), "the Lambda's code ran"


@pytest.mark.parametrize("name, content, needle", [
    ("dtype", {"x": np.zeros((8, 4), np.float64)}, "wrong dtype; got: float64; expected: float32"),
    ("shape", {"x": np.zeros((8, 5), np.float32)}, "wrong shape; got: (8, 5); expected: (N, 4)"),
    ("empty", {"x": np.zeros((0, 4), np.float32)}, "has no rows"),
    ("nan", {"x": np.full((8, 4), np.nan, np.float32)}, "NaN or Inf"),
])
def test_inputs_file_checked_against_the_model(name, content, needle, bad_models, tmp_path, capsys):
    """--inputs must have the input's dtype and shape, rows, and finite values."""
    import keras

    src = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(1)]).save(src)
    np.savez(tmp_path / "in.npz", **content)
    code, out, err = cli(["export", src, "--inputs", tmp_path / "in.npz", "--formats", "tflite",
                          "--out", tmp_path / "out"], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_unsafe_loads_the_lambda_model_with_a_warning(bad_models, tmp_path, capsys):
    code, out, err = cli(["export", bad_models / "lam.keras", "--unsafe", "--formats", "tflite",
                          "--precisions", "fp32", "--out", tmp_path / "out"], capsys)
    assert code == 0, out + err
    assert "warning: --unsafe" in err
    assert (tmp_path / "out" / "tflite" / "model_fp32.tflite").is_file()
    (bad_models / "pwned").unlink(missing_ok=True)  # the Lambda ran, as --unsafe allows

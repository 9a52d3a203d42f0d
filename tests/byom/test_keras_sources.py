"""``edgekit export model.keras`` then ``edgekit verify``: every row compared with Keras, on enough rows.

The fast subset exports TFLite and ONNX (plus TF.js where a dtype needs checking); every
format of every fixture, and the model trained on JAX, are exported and verified in
test_every_format.py (slow: the JAX training runs in a subprocess).
"""

from __future__ import annotations

import sys

import byom_models as models
import numpy as np
import pytest
from _cli import cli, manifest, report_rows


def _export_verify(src, out, capsys, *extra, formats="tflite,onnx", verify_extra=()):
    code, o, e = cli(["export", src, "--formats", formats, "--out", out, *extra], capsys)
    assert code == 0, o + e
    code, o, e = cli(["verify", out, *verify_extra], capsys)
    return code, o, e, report_rows(out / "report.json")


def _assert_all_pass_on_enough_rows(rows, min_rows=8):
    assert rows, "no rows"
    bad = [(r["format"], r["precision"], r["status"], r["message"]) for r in rows if r["status"] != "pass"]
    assert bad == []
    assert all(r["rows_compared"] >= min_rows for r in rows), [r["rows_compared"] for r in rows]
    assert all(r["reference"].startswith("keras") for r in rows)


def test_text_classifier_with_synthesised_ids(keras_file, tmp_path, capsys):
    src, _ = keras_file("text_classifier")
    out = tmp_path / "text"
    code, o, e, rows = _export_verify(src, out, capsys)
    assert code == 0, o + e
    _assert_all_pass_on_enough_rows(rows)
    assert [r["format"] for r in rows][0] == "savedmodel"
    assert {r["format"] for r in rows} == {"savedmodel", "tflite", "onnx"}
    origin = rows[0]["inputs_origin"]["token_ids"]
    assert origin == f"int32: uniform ids in [0, {models.VOCAB}) (Embedding 'embed' input_dim {models.VOCAB})"
    assert "golden inputs: token_ids: int32: uniform ids" in o
    man = manifest(out)
    assert man["source"]["kind"] == "keras" and man["source"]["keras"] == "source/model.keras"
    assert man["source"]["saved_model"] == "source/saved_model"
    assert (out / "source" / "model.keras").read_bytes() == src.read_bytes()
    from edgekit.core.fsutil import sha256_file

    assert man["source"]["keras_sha256"] == sha256_file(src)
    with np.load(out / "reference.npz") as z:
        ids = z["token_ids"]
        assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < models.VOCAB and len(ids) == 64
    assert man["reference"]["outputs_from"].startswith("keras ")


def test_uint8_image_through_tflite_int8_and_tfjs(keras_file, tmp_path, capsys):
    """uint8 frames: calibration from --inputs (full-integer int8), TF.js fed int32 by value."""
    src, inputs = keras_file("uint8_image")
    out = tmp_path / "img"
    code, o, e, rows = _export_verify(src, out, capsys, "--inputs", inputs, formats="tflite,tfjs")
    assert code == 0, o + e
    _assert_all_pass_on_enough_rows(rows)
    assert {(r["format"], r["precision"]) for r in rows} >= {("tflite", "int8"), ("tfjs", "fp32")}
    tfjs = [r for r in rows if r["format"] == "tfjs"]
    assert tfjs and all("ran as int32 in TF.js (no uint8 there" in r["message"] for r in tfjs)
    man = manifest(out)
    assert man["source"]["inputs"][0]["dtype"] == "uint8"
    tfl = {a["precision"]: a for a in man["artifacts"] if a["format"] == "tflite"}
    assert tfl["fp32"]["inputs"][0]["dtype"] == "uint8"
    assert man["options"]["calibration"] == f"--inputs {inputs}"
    assert rows[0]["inputs_origin"] == {"image": f"file {inputs}"}


def test_multi_input_of_different_ranks_and_dtypes(keras_file, tmp_path, capsys):
    src, inputs = keras_file("multi_input")
    out = tmp_path / "multi"
    code, o, e, rows = _export_verify(src, out, capsys, "--inputs", inputs)
    assert code == 0, o + e
    _assert_all_pass_on_enough_rows(rows)
    man = manifest(out)
    assert {i["name"]: (i["dtype"], len(i["shape"])) for i in man["source"]["inputs"]} == {
        "ids": ("int32", 2), "image": ("uint8", 4), "features": ("float32", 2), "flag": ("bool", 2)}
    assert [o_["name"] for o_ in man["source"]["outputs"]] == ["output_0", "output_1"]
    assert all(len(r["outputs"]) == 2 for r in rows)


def test_synthesised_inputs_of_a_multi_input_model(keras_file, tmp_path, capsys):
    src, _ = keras_file("multi_input")
    out = tmp_path / "multi_synth"
    code, o, e, rows = _export_verify(src, out, capsys, formats="onnx")
    assert code == 0, o + e
    origin = rows[0]["inputs_origin"]
    assert origin["image"] == "uint8: uniform 0..255" and origin["flag"] == "bool: fair coin flips"
    assert origin["ids"].startswith("int32: uniform ids in [0, 40)")
    assert origin["features"] == "float32: standard normal (no calibration data)"
    with np.load(out / "reference.npz") as z:
        assert z["image"].dtype == np.uint8 and z["image"].max() > 200 and z["flag"].dtype == np.bool_


def test_resizing_batchnorm_savedmodel_row_fails_and_marks_every_converted_row(keras_file, tmp_path, capsys):
    """keras-team/keras#23166: the SavedModel runs BatchNormalization in training mode."""
    src, inputs = keras_file("resize_batchnorm")
    out = tmp_path / "bn"
    code, o, e = cli(["export", src, "--formats", "tflite,onnx", "--precisions", "fp32", "--out", out,
                      "--inputs", inputs], capsys)
    code, o, e = cli(["verify", out], capsys)
    assert code == 1
    rows = report_rows(out / "report.json")
    sm = rows[0]
    assert sm["format"] == "savedmodel" and sm["status"] == "fail", sm
    assert sm["max_abs_err"] > 0.01 and sm["rows_compared"] == 64
    others = rows[1:]
    assert others and all(r["status"] in ("fail", "error") for r in others)
    assert all("converted from a SavedModel that already differs from Keras" in r["message"] for r in others)


@pytest.mark.skipif("torch" not in sys.modules and __import__("importlib").util.find_spec("torch") is None,
                    reason="torch is not installed (the lock has no torch: its PyPI wheel is the 555 MB CUDA build)")
def test_model_saved_on_torch(tmp_path, capsys):  # pragma: no cover - needs torch
    import subprocess

    script = ("import os; os.environ['KERAS_BACKEND']='torch'; import sys, numpy as np, keras; "
              "m = keras.Sequential([keras.Input((5,), name='x'), keras.layers.Dense(3), keras.layers.Dense(1)]); "
              "m.compile('adam', 'mse'); x = np.random.default_rng(0).standard_normal((64, 5)).astype('float32'); "
              "m.fit(x, x[:, :1], epochs=1, verbose=0); m.save(sys.argv[1]); np.savez(sys.argv[2], x=x)")
    src, inputs = tmp_path / "torch.keras", tmp_path / "torch_inputs.npz"
    subprocess.run([sys.executable, "-c", script, str(src), str(inputs)], check=True,
                   env={**__import__("os").environ, "KERAS_BACKEND": "torch"})
    code, o, e, rows = _export_verify(src, tmp_path / "torch", capsys, "--inputs", inputs)
    assert code == 0, o + e
    _assert_all_pass_on_enough_rows(rows)


def test_too_few_golden_rows_is_insufficient_not_a_pass(keras_file, tmp_path, capsys):
    src, inputs = keras_file("text_classifier")
    out = tmp_path / "few"
    with np.load(inputs) as z:
        np.savez(tmp_path / "four.npz", token_ids=z["token_ids"][:4])
    code, o, e, rows = _export_verify(src, out, capsys, formats="onnx",
                                      verify_extra=("--inputs", tmp_path / "four.npz"))
    assert code == 1
    assert [(r["format"], r["status"]) for r in rows] == [("savedmodel", "insufficient"),
                                                          ("onnx", "insufficient"), ("onnx", "insufficient")]
    assert all(r["rows_compared"] == 4 and "fewer than the 8 a verdict needs" in r["message"] for r in rows)
    assert "3 insufficient" in o
    code, o, e = cli(["verify", out, "--inputs", tmp_path / "four.npz", "--min-rows", "4"], capsys)
    assert code == 0, o + e


def test_verify_inputs_are_checked_one_line(keras_file, tmp_path, capsys):
    src, _ = keras_file("text_classifier")
    out = tmp_path / "chk"
    assert cli(["export", src, "--formats", "onnx", "--precisions", "fp32", "--out", out], capsys)[0] == 0
    np.savez(tmp_path / "bad.npz", token_ids=np.zeros((9, 10), np.int64))
    code, o, e = cli(["verify", out, "--inputs", tmp_path / "bad.npz"], capsys)
    assert code == 2 and len(e.strip().splitlines()) == 1
    assert "'token_ids' has the wrong dtype; got: int64; expected: int32" in e

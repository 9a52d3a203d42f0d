"""int8 that keeps accuracy: --keep-float auto turns a failing full-integer int8 file into a passing one."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _rows(report) -> dict:
    return {f"{r.format}/{r.precision}": r for r in report.rows}


def test_plain_int8_fails_and_auto_keep_float_passes(saturating_export, tmp_path):
    import edgekit

    plain = _rows(edgekit.verify(saturating_export, formats=["tflite"]))
    assert plain["tflite/fp32"].status == "pass"
    assert plain["tflite/int8"].status == "fail", plain["tflite/int8"].message

    d = saturating_export.parent
    out = tmp_path / "kf"
    report = edgekit.export(str(d / "model.keras"), out=str(out), formats=["tflite"], precisions=["int8"],
                            inputs=str(d / "inputs.npz"), calibration=str(d / "calibration.npz"), keep_float="auto")
    assert report, report
    art = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    kept = art["quantization"]["keep_float"]
    assert kept["mode"] == "auto" and kept["met_tolerance"] is True
    assert kept["layers"][0] == "spike", kept            # the saturating layer is blamed first
    assert "head" not in kept["layers"] and "d1" not in kept["layers"]
    assert kept["size_cost_bytes"] == kept["bytes"] - kept["plain_int8_bytes"] > 0
    assert [s["passed"] for s in kept["steps"]][-1] is True and not kept["steps"][0]["passed"]
    # QuantizationDebugger's per-layer error (each op on the same inputs as its float twin) ranks it worst
    worst = kept["layer_errors"][0]
    assert worst["layer"] == "spike" and worst["rmse/scale"] > 10 * kept["layer_errors"][1]["rmse/scale"], kept
    fixed = _rows(edgekit.verify(out, formats=["tflite"]))["tflite/int8"]
    assert fixed.status == "pass", fixed.message
    assert fixed.max_abs_err < plain["tflite/int8"].max_abs_err
    # the layers not kept are still int8 in the file
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(out / art["path"]))
    dtypes = {d["name"]: np.dtype(d["dtype"]).name for d in it.get_tensor_details()}
    assert any("d1" in n and t == "int8" for n, t in dtypes.items())
    assert any("spike" in n and t == "float32" for n, t in dtypes.items())


@pytest.mark.slow
def test_keep_float_named_layers_and_a_bad_name(saturating_export, tmp_path):
    import edgekit

    d = saturating_export.parent
    common = {"formats": ["tflite"], "precisions": ["int8"], "inputs": str(d / "inputs.npz"),
              "calibration": str(d / "calibration.npz")}
    report = edgekit.export(str(d / "model.keras"), out=str(tmp_path / "named"), keep_float="spike,squash", **common)
    assert report
    kept = json.loads((tmp_path / "named" / "manifest.json").read_text())["artifacts"][0]["quantization"]["keep_float"]
    assert kept["mode"] == "list" and kept["layers"] == ["spike", "squash"] and kept["denylisted_ops"] >= 2
    assert _rows(edgekit.verify(tmp_path / "named", formats=["tflite"]))["tflite/int8"].status == "pass"

    bad = edgekit.export(str(d / "model.keras"), out=str(tmp_path / "bad"), keep_float=["nolayer"], **common)
    (res,) = bad.results
    assert res.status == "failed" and "nolayer" in res.error and "spike" in res.error


def test_onnx_int8_dynamic_auto_keep_float_passes(saturating_export, tmp_path):
    """ONNX: onnxruntime's dynamic int8 of the saturating model fails; auto excludes layers from
    quantisation (nodes_to_exclude) until it passes, and the manifest lists them."""
    import edgekit

    d = saturating_export.parent
    common = {"formats": ["onnx"], "precisions": ["int8_dynamic"], "inputs": str(d / "inputs.npz")}
    assert edgekit.export(str(d / "model.keras"), out=str(tmp_path / "plain"), **common)
    plain = _rows(edgekit.verify(tmp_path / "plain", formats=["onnx"]))["onnx/int8_dynamic"]
    assert plain.status == "fail" and "first divergent layer:" in plain.message, plain.message
    assert edgekit.export(str(d / "model.keras"), out=str(tmp_path / "kf"), keep_float="auto", **common)
    art = json.loads((tmp_path / "kf" / "manifest.json").read_text())["artifacts"][0]
    kept = art["quantization"]["keep_float"]
    assert kept["met_tolerance"] and "spike" in kept["layers"] and "d1" not in kept["layers"], kept
    assert kept["size_cost_bytes"] == kept["bytes"] - kept["plain_int8_bytes"]
    assert _rows(edgekit.verify(tmp_path / "kf", formats=["onnx"]))["onnx/int8_dynamic"].status == "pass"

"""``edgekit check`` / ``edgekit.check()``: predictions made without converting, and that they hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="check reads TensorFlow graphs (edgekit[export])")

REPO = Path(__file__).resolve().parents[2]


def _save(model, dest: Path, keras_file: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    model.export(str(dest / "saved_model"), verbose=False)
    if keras_file:
        model.save(str(dest / "model.keras"))
    return dest / "saved_model"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("check")
    x = keras.Input((6,), name="features")
    gelu = _save(keras.Model(x, L.Dense(3)(L.Dense(8, activation="gelu")(x))), root / "gelu")
    s = keras.Input((5, 3), name="sequence")
    rnn = keras.Model(s, L.Dense(1)(L.LSTM(4)(s)))
    rnn_bare = _save(rnn, root / "rnn_bare")
    rnn_keras = _save(rnn, root / "rnn_keras", keras_file=True)
    b = keras.Input((4,), name="features")
    bucket = _save(keras.Model(b, L.Discretization(bin_boundaries=[-0.5, 0.0, 0.5])(b)), root / "bucketize")
    return {"gelu": gelu, "rnn_bare": rnn_bare, "rnn_keras": rnn_keras, "bucketize": bucket}


def test_exact_gelu_needs_erfc_rewrite_except_on_tflite(models):
    import edgekit

    report = edgekit.check(models["gelu"])
    assert report, report.predicted_failures()
    assert report.ops.get("Erfc") == 1
    assert report.get("tflite").rewrites == []  # TFLite turns the erfc form into its GELU builtin
    for fmt in ("coreml", "tfjs", "onnx"):
        assert report.get(fmt).rewrites == ["erfc->1-erf"], fmt
        assert all(o["op"] != "Erfc" for o in report.get(fmt).ops)
    assert report.get("tfjs").dtypes == {"inputs": {"features": "float32"}, "outputs": {"output_0": "float32"}}
    data = json.loads(report.to_json())
    assert data["ok"] and {f["format"] for f in data["formats"]} == {"tflite", "coreml", "tfjs", "onnx"}


def test_rnn_loop_predicted_to_fail_without_the_keras_file(models):
    from edgekit.export.check import check

    bare = check(models["rnn_bare"])
    assert bare.graph == "serving signature"
    assert bare.get("tflite").verdict == "fails" and "TensorListReserve" in bare.get("tflite").reason
    assert "model.keras" in bare.get("tflite").reason
    assert bare.get("tfjs").verdict == "warn" and "While" in bare.get("tfjs").reason  # runs in some models
    assert bare.get("coreml").verdict == "fails" and "While" in bare.get("coreml").reason
    assert bare.get("onnx").verdict == "ok"  # tf2onnx converts the loop
    flex = check(models["rnn_bare"], formats=["tflite"], select_tf_ops=True)
    assert flex.get("tflite").verdict == "flex" and "ai-edge-litert cannot load" in flex.get("tflite").reason
    unrolled = check(models["rnn_keras"])
    assert unrolled.graph.startswith("keras re-trace, 1 recurrent layer(s) unrolled over 5 steps")
    assert unrolled, unrolled.predicted_failures()
    assert "While" not in unrolled.ops


def test_predicted_failures_are_the_export_failures(models, tmp_path):
    """The property check exists for: what it says will fail is what export reports failed."""
    from edgekit.export.api import export_model
    from edgekit.export.check import check

    for name in ("bucketize", "rnn_bare"):
        verdicts = {f.format: f.verdict for f in check(models[name]).formats}
        report = export_model(models[name], out=tmp_path / name, precisions=["fp32"])
        failed = {r.format for r in report.results if r.status == "failed"}
        sure = {f for f, v in verdicts.items() if v in ("fails", "flex")}
        assert sure <= failed, f"{name}: check said {verdicts}, export failed {sorted(failed)}"
        assert failed <= {f for f, v in verdicts.items() if v != "ok"}, f"{name}: {verdicts} vs {sorted(failed)}"
        assert failed, f"{name} was meant to exercise a converter limit"
        said = {line.split(":")[0] for line in report.preflight}
        assert sure <= said <= {f for f, v in verdicts.items() if v != "ok"}, (name, report.preflight)


def test_export_says_up_front_and_flex_only_on_request(models, tmp_path):
    """The CLI prints check's prediction before the summary; --tflite-select-tf-ops gives a Flex file
    that the manifest marks and verify will not call a pass (ai-edge-litert has no Flex delegate)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, env=env,
                              timeout=600, cwd=REPO)

    plain = run("export", str(models["rnn_bare"]), "--formats", "tflite", "--precisions", "fp32",
                "--out", str(tmp_path / "plain"))
    assert plain.returncode == 1, plain.stderr[-2000:]
    said = plain.stdout.index("check predicts tflite: fails")
    assert said < plain.stdout.index("format"), plain.stdout  # before the summary table
    flex = run("export", str(models["rnn_bare"]), "--formats", "tflite", "--precisions", "fp32",
               "--tflite-select-tf-ops", "--out", str(tmp_path / "flex"))
    assert flex.returncode == 0, flex.stdout + flex.stderr[-2000:]
    man = json.loads((tmp_path / "flex" / "manifest.json").read_text())
    assert man["options"]["tflite_select_tf_ops"] is True
    art = man["artifacts"][0]
    assert art["flex_ops"] and "ai-edge-litert" in " ".join(art["cannot_load_in"]), art
    ver = run("verify", str(tmp_path / "flex"), "--json", str(tmp_path / "flex.json"))
    rows = json.loads((tmp_path / "flex.json").read_text())
    assert [r["status"] for r in rows if r["format"] == "tflite"] == ["unverified"], rows
    assert ver.returncode != 0


def test_verify_rows_name_the_rewrites(models, tmp_path):
    from edgekit.export.api import export_model
    from edgekit.parity.verify import verify

    export_model(models["gelu"], out=tmp_path / "gelu", formats=["onnx", "tflite"], precisions=["fp32"])
    report = verify([tmp_path / "gelu"])
    by_fmt = {r.format: r for r in report.rows if r.format in ("onnx", "tflite")}
    assert by_fmt["onnx"].status == "pass" and by_fmt["onnx"]["rewrites"] == ["erfc->1-erf"]
    assert "rewrites: erfc->1-erf" in by_fmt["onnx"].message
    assert "rewrites" not in by_fmt["tflite"] and "rewrites" not in by_fmt["tflite"].message


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "edgekit", "check", *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=REPO)


def test_cli_table_json_and_exit_codes(models, tmp_path):
    out = tmp_path / "check.json"
    ok = _cli(str(models["gelu"]), "--json", str(out))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "erfc->1-erf" in ok.stdout and "verdict" in ok.stdout and "Traceback" not in ok.stderr
    assert json.loads(out.read_text())["ok"] is True
    bad = _cli(str(models["rnn_bare"]), "--formats", "tflite,tfjs")
    assert bad.returncode == 1 and "predicted: tflite: fails" in bad.stdout
    usage = _cli(str(models["gelu"]), "--formats", "tflite,nosuch")
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1 and "unknown format" in usage.stderr
    missing = _cli(str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_probe_inputs_are_valid_ids():
    from edgekit.export.graph import probe_inputs

    class Src:
        inputs = [{"name": "ids", "shape": [None, 4], "dtype": "int32"},
                  {"name": "x", "shape": [None, 2], "dtype": "float32"}]

    feeds = probe_inputs(Src(), None, rows=3)
    assert feeds["ids"].dtype == np.int32 and feeds["ids"].shape == (3, 4) and feeds["ids"].max() <= 1
    assert feeds["x"].dtype == np.float32

"""Every fixture through every format (slow): ``edgekit export model.keras`` then ``edgekit verify``.

Each row that ran is compared with Keras on at least 8 golden rows and passes. The gaps that are
Core ML's own are allowed by name, and only those: Core ML ML Programs take no uint8 input
(the conversion fails and is recorded), and the Core ML reference evaluator on Linux may lack
an op (``unverified``, never a pass). The Resizing + BatchNorm model must fail its savedmodel row.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _cli import cli, manifest, report_rows

pytestmark = pytest.mark.slow

#: (fixture, format) -> text the row's message must hold when the row does not pass
KNOWN_GAPS: dict = {}  # none left: Core ML declares integer inputs int32; the evaluator runs Embedding's gather


@pytest.mark.parametrize("name", ["text_classifier", "uint8_image", "multi_input", "jax_mlp"])
def test_every_format_matches_keras(name, keras_file, tmp_path, capsys):
    src, inputs = keras_file(name)
    out = tmp_path / name
    code, o, e = cli(["export", src, "--inputs", inputs, "--out", out], capsys)
    assert code in (0, 1), o + e
    code, o, e = cli(["verify", out], capsys)
    rows = report_rows(out / "report.json")
    man = manifest(out)
    assert not man["skipped"]  # int8 calibrated from --inputs
    assert rows[0]["format"] == "savedmodel" and rows[0]["status"] == "pass"
    for r in rows:
        key = (name, r["format"])
        if r["status"] == "pass":
            assert r["rows_compared"] >= 8 and r["reference"].startswith("keras"), r
        else:
            assert key in KNOWN_GAPS and KNOWN_GAPS[key] in r["message"], (r["format"], r["precision"],
                                                                           r["status"], r["message"])
    formats = {r["format"] for r in rows if r["status"] == "pass"}
    assert {"savedmodel", "tflite", "onnx", "tfjs"} <= formats, formats
    assert code == (0 if all(r["status"] == "pass" for r in rows) else 1)
    if name == "jax_mlp":  # the weights saved on JAX predict the same under TensorFlow
        jax_pred = np.load(src.parent / "jax_mlp_predictions.npy", allow_pickle=False)
        with np.load(out / "reference.npz", allow_pickle=False) as z:
            assert np.abs(z["output_0"] - jax_pred).max() < 1e-6


def test_resizing_batchnorm_fails_in_every_format(keras_file, tmp_path, capsys):
    src, inputs = keras_file("resize_batchnorm")
    out = tmp_path / "bn"
    cli(["export", src, "--inputs", inputs, "--out", out], capsys)
    code, o, e = cli(["verify", out], capsys)
    rows = report_rows(out / "report.json")
    assert code == 1 and rows[0]["format"] == "savedmodel" and rows[0]["status"] == "fail"
    assert len(rows) > 10 and all(r["status"] != "pass" for r in rows)
    assert all("already differs from Keras" in r["message"] for r in rows[1:])


@pytest.mark.skipif(not __import__("edgekit.web.browser", fromlist=["x"]).chromium_available(),
                    reason="Chromium or Playwright is not installed (make setup installs both)")
def test_browser_check_of_a_keras_export(keras_file, tmp_path, capsys):
    src, inputs = keras_file("multi_input")
    out = tmp_path / "multi"
    assert cli(["export", src, "--inputs", inputs, "--formats", "tfjs", "--out", out], capsys)[0] == 0
    code, o, e = cli(["verify", out, "--browser"], capsys)
    rows = [r for r in report_rows(out / "report.json") if r["format"] == "tfjs-browser"]
    assert code == 0, o + e
    assert {r["backend"] for r in rows} >= {"wasm", "cpu"} and len(rows) >= 6
    assert all(r["status"] == "pass" and r["rows_compared"] == 64 and len(r["outputs"]) == 2 for r in rows)


JAX_API = textwrap.dedent("""
    import os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    import numpy as np, keras, edgekit
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), name="features")
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(8, activation="relu")(inp)))
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.random.default_rng(0).standard_normal((64, 6)).astype("float32"),
              np.eye(2)[np.arange(64) % 2], epochs=1, verbose=0)
    report = edgekit.export(model, sys.argv[1], formats=["tflite", "onnx"])
    assert keras.backend.backend() == "jax"
    print("KIND", report.kind, report.ok)
""")


def test_python_api_on_a_live_model_in_a_jax_process(tmp_path):
    """Keras on JAX in the caller's process: the export runs in a TensorFlow child process."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", JAX_API, str(tmp_path / "jax_live")], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "KIND live True" in proc.stdout
    import edgekit

    result = edgekit.verify(tmp_path / "jax_live")
    assert result.passed, result.summary()
    assert manifest(tmp_path / "jax_live")["source"]["kind"] == "live"

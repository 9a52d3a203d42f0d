"""``Runner.predict`` on hostile arrays, through the Python API on the real runtimes of an
exported regression model: wrong rank / shape / dtype and an empty batch are refused with one
:class:`InputError` line (exit code 2) naming what was got and what was expected; NaN/Inf
inputs are computed and flagged on the result (``nonfinite_inputs``, ``finite``)."""

from __future__ import annotations

import numpy as np
import pytest
from _robust import assert_one_line_exc, diff_snapshots, snapshot

from edgekit.core.errors import InputError

N_FEATURES = 10
FORMATS = ("tflite", "onnx", "tfjs", "coreml")
ARTIFACT = {"tflite": "tflite/model_fp32.tflite", "onnx": "onnx/model_fp32.onnx", "tfjs": "tfjs/fp32",
            "coreml": "coreml/model_fp32.mlpackage"}


def _x(n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def runners(robust_example):
    from edgekit.runtime.registry import open_model

    opened = {}

    def get(fmt):
        if fmt not in opened:
            opened[fmt] = open_model(robust_example / "exports" / ARTIFACT[fmt])
        return opened[fmt]

    yield get
    for r in opened.values():
        r.close()


BAD = [
    ("rank-1", lambda x: x[0], ["wrong rank", "(10,)", "rank 2", "float32[None, 10]"]),
    ("rank-3", lambda x: x[None], ["wrong rank", "(1, 4, 10)", "rank 2"]),
    ("scalar", lambda x: np.array(1.0, np.float32), ["wrong rank", "shape ()", "rank 2"]),
    ("shape", lambda x: x[:, :7], ["wrong shape (axis 1)", "(4, 7)", "float32[None, 10]"]),
    ("dtype-float64", lambda x: x.astype(np.float64), ["wrong dtype", "float64", "float32"]),
    ("dtype-float16", lambda x: x.astype(np.float16), ["wrong dtype", "float16", "float32"]),
    ("dtype-int64", lambda x: x.astype(np.int64), ["wrong dtype", "int64", "float32"]),
    ("dtype-big-endian", lambda x: x.astype(">f4"), ["wrong dtype", ">f4", "float32"]),
    ("empty-batch", lambda x: x[:0], ["empty batch", "(0, 10)", "at least one row"]),
    ("not-an-array", lambda x: x.tolist(), ["not a numpy array", "list", "float32"]),
]


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
@pytest.mark.parametrize("kind,make,words", BAD, ids=[b[0] for b in BAD])
def test_bad_array_one_line_input_error_nothing_written(fmt, kind, make, words, runners, robust_example):
    r = runners(fmt)
    assert [i.describe() for i in r.inputs] == ["features: float32[None, 10]"]
    before = snapshot(robust_example)
    with pytest.raises(InputError) as exc:
        r.predict(make(_x()))
    assert exc.value.exit_code == 2
    assert_one_line_exc(exc.value, *words, "got:", "expected:")
    assert diff_snapshots(before, snapshot(robust_example)) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_and_inf_inputs_are_computed_and_flagged(fmt, runners):
    r = runners(fmt)
    assert [i.describe() for i in r.inputs] == ["features: float32[None, 10]"]
    x = _x(6)
    clean = r.predict(x)
    assert clean.finite and clean.nonfinite_inputs == {} and clean.nonfinite_outputs == {}
    x[0, 0], x[1, 3], x[1, 4], x[2, 9] = np.nan, np.inf, -np.inf, np.nan
    out = r.predict(x)
    assert set(out) == {"output_0"} and out["output_0"].shape == (6, 1)     # computed, not refused
    assert out.nonfinite_inputs == {"features": 4} and not out.finite       # and flagged
    np.testing.assert_allclose(out["output_0"][3:], clean["output_0"][3:], rtol=0, atol=1e-5)
    assert out.nonfinite_outputs.get("output_0", 0) == int((~np.isfinite(out["output_0"])).sum())


def test_nan_flag_survives_chunking(runners):
    r = runners("tflite")
    x = _x(1000, seed=3)
    x[999, 0] = np.nan
    out = r.predict(x, batch_size=64)
    assert out.nonfinite_inputs == {"features": 1} and out["output_0"].shape == (1000, 1)
    whole = r.predict(x)
    np.testing.assert_array_equal(out["output_0"], whole["output_0"])


def test_verify_flags_nan_golden_inputs(fresh, tmp_path):
    """NaN/Inf in reference.npz's inputs: every runtime computes them, and verify fails the rows
    with a NaN/Inf message (exit 1) instead of passing silently."""
    import json

    from _robust import run_cli

    ex = fresh()
    with np.load(ex / "reference.npz", allow_pickle=False) as z:
        ref = {k: z[k] for k in z.files}
    ref["features"][0, 0], ref["features"][1, 1] = np.nan, np.inf
    np.savez(ex / "reference.npz", **ref)
    proc = run_cli(["verify", ex, "--formats", "tflite", "onnx"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    rows = json.loads((ex / "report.json").read_text())
    assert {(r["format"], r["status"]) for r in rows} == {("tflite", "fail"), ("onnx", "fail")}
    assert all("NaN/Inf value(s) in the output" in r["message"] for r in rows)

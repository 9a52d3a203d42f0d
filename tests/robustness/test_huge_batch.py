"""Huge batches go through the runtime in chunks: the chunked result equals the one-call result
(bit for bit on CPU runtimes), and the benchmark's probe (benchmarks/bench_huge_batch.py,
peak RSS for 10**6 rows) runs. No timing or memory assertions here: figures are in the
benchmark's output."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _robust import ENV, REPO

ROWS = 50_000
ARTIFACT = {"tflite": "tflite/model_fp32.tflite", "onnx": "onnx/model_fp32.onnx"}


@pytest.mark.parametrize("fmt", sorted(ARTIFACT))
def test_chunked_equals_unchunked(fmt, robust_example):
    from edgekit.runtime.base import DEFAULT_CHUNK_ROWS
    from edgekit.runtime.registry import open_model

    x = np.random.default_rng(5).standard_normal((ROWS, 10), dtype=np.float32) * 3
    with open_model(robust_example / "exports" / ARTIFACT[fmt]) as r:
        assert r.options["chunk_rows"] == DEFAULT_CHUNK_ROWS < ROWS
        chunked = r.predict(x)                       # 13 runtime calls, the last one partial
        odd = r.predict(x, batch_size=997)           # chunk size not dividing the batch
        whole = r.predict(x, batch_size=ROWS)        # one call
    assert chunked["output_0"].shape == whole["output_0"].shape == (ROWS, 1)
    # rows are independent and these CPU kernels are row-deterministic: bit-identical
    np.testing.assert_array_equal(chunked["output_0"], whole["output_0"])
    np.testing.assert_array_equal(odd["output_0"], whole["output_0"])


def test_benchmark_probe_runs(robust_example):
    proc = subprocess.run([sys.executable, "benchmarks/bench_huge_batch.py", "--probe",
                           str(robust_example / "exports" / ARTIFACT["tflite"]), "--rows", "20000"],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["rows"] == 20000 and r["input_bytes"] == 20000 * 10 * 4 and r["output_bytes"] == 20000 * 4
    assert r["peak_rss_bytes"] >= r["rss_before_bytes"] > 0 and r["finite"] is True

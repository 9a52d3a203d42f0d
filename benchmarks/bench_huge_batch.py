"""Peak memory of predicting a huge batch (10**6 rows by default) through the runtime adapters.

For each regression example (``regression_deep``, ``regression_mlp``) and each format
(TFLite, ONNX; fp32), one fresh process per measurement loads the exported model with
``edgekit.runtime.registry.open_model``, allocates the float32 input (N x 10), reads its current RSS
(``VmRSS``) and then runs ``Runner.predict``:

* ``chunked``: the default (``chunk_rows`` = 4096 rows per runtime call);
* ``unchunked``: ``predict(x, batch_size=N)``, the whole batch in one runtime call.

Peak RSS is the process's ``ru_maxrss`` after the call. ``predict extra`` = peak minus the
RSS just before ``predict`` (input and loaded model included in the latter): what the call
itself needed on top of the data, compared with the input array's size. ``peak before`` is
``ru_maxrss`` just before the call (imports and model loading): when ``peak RSS`` equals it,
the call never raised the process's high-water mark and ``predict extra`` is an upper bound.

Usage::

    .venv/bin/python benchmarks/bench_huge_batch.py [--artifacts DIR] [--rows 1000000] [--json out.json]

Without ``--artifacts`` (a dir holding ``regression_deep/`` and ``regression_mlp/`` with
``exports/``), both examples are quick-trained and exported (tflite, onnx; fp32) into
``/tmp/edgekit-huge-batch`` once and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("regression_deep", "regression_mlp")
ARTIFACTS = {"tflite": "tflite/model_fp32.tflite", "onnx": "onnx/model_fp32.onnx"}
MODES = ("chunked", "unchunked")
DEFAULT_WORK = Path("/tmp/edgekit-huge-batch")
MB = 1024 * 1024


def _vmrss() -> int:
    """Current resident set size in bytes (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def probe(model: Path, rows: int, mode: str, threads: int) -> dict:
    """One measurement, in this (fresh) process. Returns the figures in bytes and seconds."""
    import numpy as np

    from edgekit.runtime.registry import open_model

    fmt = "tflite" if model.suffix == ".tflite" else "onnx"
    opts = {"num_threads": threads} if fmt == "tflite" else {"intra_op_num_threads": threads}
    with open_model(model, **opts) as runner:
        n_features = runner.inputs[0].shape[1]
        # generated in float32 directly: a float64 intermediate would set the process's peak
        # at 3x the input before predict even starts
        x = np.random.default_rng(0).standard_normal((rows, n_features), dtype=np.float32)
        runner.predict(x[:8])  # warm-up: first-call allocations are not the batch's
        before = _vmrss()
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t0 = time.perf_counter()
        out = runner.predict(x, batch_size=rows if mode == "unchunked" else None)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        y = out["output_0"]
        return {"runtime": runner.runtime_name, "rows": rows, "mode": mode, "input_bytes": int(x.nbytes),
                "output_bytes": int(y.nbytes), "rss_before_bytes": before, "maxrss_before_bytes": maxrss_before,
                "peak_rss_bytes": peak, "predict_extra_bytes": max(peak - before, 0), "seconds": seconds,
                "finite": bool(out.finite), "chunk_rows": runner.options["chunk_rows"]}


def measure(model: Path, rows: int, mode: str, threads: int = 1) -> dict:
    """Run :func:`probe` in its own process (``ru_maxrss`` is per process) and return its figures."""
    proc = subprocess.run([sys.executable, __file__, "--probe", str(model), "--rows", str(rows), "--mode", mode,
                           "--threads", str(threads)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        raise RuntimeError(f"probe failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(work: Path) -> Path:
    """Quick-train and export the regression examples into ``work`` unless already there."""
    missing = [e for e in EXAMPLES if not (work / e / "exports" / "manifest.json").is_file()]
    if missing:
        subprocess.run([sys.executable, "-m", "edgekit", "train", *missing, "--quick", "--out", str(work)],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "edgekit", "export", *(str(work / e) for e in missing),
                        "--formats", "tflite,onnx", "--precisions", "fp32"], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL)
    return work


def table(results: list[dict]) -> str:
    head = ("example", "format", "mode", "rows", "input MB", "RSS before MB", "peak before MB", "peak RSS MB",
            "predict extra MB", "extra/input", "s")
    from edgekit.core.table import render

    lines = []
    for r in results:
        lines.append((r["example"], r["format"], r["mode"], f"{r['rows']:,}", f"{r['input_bytes'] / MB:.1f}",
                      f"{r['rss_before_bytes'] / MB:.1f}", f"{r['maxrss_before_bytes'] / MB:.1f}",
                      f"{r['peak_rss_bytes'] / MB:.1f}",
                      f"{r['predict_extra_bytes'] / MB:.1f}",
                      f"{r['predict_extra_bytes'] / r['input_bytes']:.2f}", f"{r['seconds']:.2f}"))
    return render(head, lines, right=range(3, len(head)), rule=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifacts", type=Path, default=None,
                    help=f"dir with the exported regression examples (default: train into {DEFAULT_WORK})")
    ap.add_argument("--rows", type=int, default=1_000_000, help="batch rows (default 1000000)")
    ap.add_argument("--formats", nargs="+", choices=sorted(ARTIFACTS), default=sorted(ARTIFACTS))
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--probe", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=MODES, default="chunked", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe is not None:
        print(json.dumps(probe(args.probe, args.rows, args.mode, args.threads)))
        return 0
    root = args.artifacts or prepare(DEFAULT_WORK)
    results = []
    for ex in EXAMPLES:
        for fmt in args.formats:
            for mode in args.modes:
                r = measure(root / ex / "exports" / ARTIFACTS[fmt], args.rows, mode, args.threads)
                results.append({"example": ex, "format": fmt, **r})
                print(f"  {ex} {fmt} {mode}: peak {r['peak_rss_bytes'] / MB:.1f} MB", file=sys.stderr)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""TFLite adapter overhead over the raw LiteRT call, paired, per model and precision (issue 17).

Usage::

    .venv/bin/python benchmarks/bench_adapter.py /tmp/ek17/real/*/ [--precisions int8 fp32] [--seconds 3]

For each ``DIR/exports/tflite/model_<precision>.tflite`` (DIR as built by ``benchmarks/real_models.py``;
the input is the first row of ``DIR/calibration.npz``), three calls run in alternating blocks of 10 in
one process at 1 thread, so load from elsewhere hits them alike:

- ``raw``: ``set_tensor``/``invoke``/``get_tensor`` with the input already quantized (what
  ``edgekit bench`` times as the raw call);
- ``adapter``: ``runner.predict(x)`` as shipped (float input; int8 files quantize it with LiteRT's
  reference QUANTIZE kernel in a one-op interpreter, after a NaN/range test);
- ``numpy quant``: the same adapter with the numpy formula :func:`edgekit.runtime.tflite.quantize`
  instead (the path before this change; int8 only).

Prints a Markdown table: p50 µs of each, and the adapter's overhead over raw in % and µs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from edgekit.bench import timing  # noqa: E402
from edgekit.bench.cases import open_case  # noqa: E402
from edgekit.runtime.registry import open_model  # noqa: E402

BLOCK = 10


def paired(calls: dict, seconds: float) -> dict[str, float]:
    """p50 seconds of each zero-argument call, timed in alternating blocks of ``BLOCK`` calls."""
    for fn in calls.values():
        timing.warm_up(fn, 5, 0.1)
    samples = timing.alternating(calls, seconds, float("inf"), BLOCK, max_samples=None)
    return {k: timing.percentile(sorted(s), 50) for k, s in samples.items()}


def measure(model_dir: Path, precision: str, seconds: float) -> dict | None:
    path = model_dir / "exports" / "tflite" / f"model_{precision}.tflite"
    if not path.is_file():
        return None
    with np.load(model_dir / "calibration.npz", allow_pickle=False) as z:
        x1 = {k: np.ascontiguousarray(z[k][:1]) for k in z.files}
    raw = open_case({"format": "tflite", "runner": "raw", "path": str(path)}, 1)
    runner = open_model(path, format="tflite", num_threads=1, tuning=False)
    try:
        feeds = dict(x1)
        calls = {"raw": raw.bind(feeds), "adapter": lambda: runner.predict(feeds)}
        fast = dict(getattr(runner, "_quantizers", {}))
        if fast:
            slow = open_model(path, format="tflite", num_threads=1, tuning=False)
            slow._quantizers = {k: None for k in fast}
            calls["numpy quant"] = lambda: slow.predict(feeds)
        p50 = paired(calls, seconds)
    finally:
        runner.close()
    out = {"model": model_dir.name, "precision": precision, "fast": all(v is not None for v in fast.values()),
           **{k: v * 1e6 for k, v in p50.items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--precisions", nargs="+", default=["int8", "fp32"])
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model and precision (default 3)")
    args = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = [r for d in args.dirs for p in args.precisions if (r := measure(d, p, args.seconds)) is not None]
    print("| model | variant | raw µs | adapter µs | overhead | µs | numpy-quant adapter µs | overhead |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        np_cols = (f"{r['numpy quant']:.1f} | {r['numpy quant'] / r['raw'] - 1:+.1%}" if "numpy quant" in r
                   else "– | –")
        print(f"| {r['model']} | tflite {r['precision']} | {r['raw']:.1f} | {r['adapter']:.1f} | "
              f"{r['adapter'] / r['raw'] - 1:+.1%} | {r['adapter'] - r['raw']:+.1f} | {np_cols} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

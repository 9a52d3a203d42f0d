"""XNNPACK delegate partitions and raw-call latency of two exports of the same model, paired (issue 17).

Usage::

    .venv/bin/python benchmarks/real_models.py /tmp/real --models efficientnet_b0_128      # the old export
    .venv/bin/python benchmarks/bench_partitions.py OLD/exports NEW/exports [--precisions fp32 int8]
        [--threads 1 2] [--seconds 6]

For each ``tflite/model_<precision>.tflite`` present in both export dirs: the number of ``DELEGATE``
partitions of each file (:func:`edgekit.bench.partitions.delegate_partitions`), then both files' raw
calls (``set_tensor``/``invoke``/``get_tensor``, batch 1, input quantized beforehand for int8) in
alternating blocks of 10 in one process, per thread count, so load from elsewhere hits both alike.
Also checks that both files give the same outputs at batch 1 and batch 3 (the batch stays dynamic).
Prints a Markdown table: partitions old/new, p50 ms old/new, new/old.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from edgekit.bench.cases import open_case  # noqa: E402
from edgekit.bench.partitions import delegate_partitions  # noqa: E402
from edgekit.runtime.registry import open_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adapter import paired  # noqa: E402


def _inputs(exports: Path, rows: int) -> dict:
    calib = exports.parent / "calibration.npz"
    runner = open_model(next((exports / "tflite").glob("*.tflite")), format="tflite", tuning=False)
    infos = runner.inputs
    runner.close()
    if calib.is_file():
        with np.load(calib, allow_pickle=False) as z:
            return {i.name: np.ascontiguousarray(z[i.name][:rows]) for i in infos}
    rng = np.random.default_rng(0)
    return {i.name: rng.standard_normal((rows, *i.shape[1:])).astype(np.float32) for i in infos}


def compare(old: Path, new: Path, precision: str, threads: list[int], seconds: float) -> list[dict]:
    fo, fn = (d / "tflite" / f"model_{precision}.tflite" for d in (old, new))
    if not (fo.is_file() and fn.is_file()):
        return []
    po, pn = delegate_partitions(fo)["partitions"], delegate_partitions(fn)["partitions"]
    x3 = _inputs(old, 3)
    with open_model(fo, format="tflite", tuning=False) as a, open_model(fn, format="tflite", tuning=False) as b:
        same, close = True, 0.0
        for n in (1, 3):
            feeds = {k: v[:n] for k, v in x3.items()}
            ya, yb = a.predict(feeds), b.predict(feeds)
            same = same and all(np.array_equal(ya[k], yb[k]) for k in ya)
            close = max(close, *(float(np.max(np.abs(ya[k] - yb[k]))) for k in ya))
    x1 = {k: v[:1] for k, v in x3.items()}
    rows = []
    for t in threads:
        ro = open_case({"format": "tflite", "runner": "raw", "path": str(fo)}, t)
        rn = open_case({"format": "tflite", "runner": "raw", "path": str(fn)}, t)
        p50 = paired({"old": ro.bind(x1), "new": rn.bind(x1)}, seconds)
        rows.append({"precision": precision, "threads": t, "partitions": (po, pn), "old_ms": p50["old"] * 1e3,
                     "new_ms": p50["new"] * 1e3, "same": same, "max_diff": close})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--seconds", type=float, default=6.0, help="timed seconds per file pair and thread count")
    args = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = [r for p in args.precisions for r in compare(args.old, args.new, p, args.threads, args.seconds)]
    print("| variant | threads | partitions old → new | old p50 ms | new p50 ms | new/old | outputs (b1, b3) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        outputs = "identical" if r["same"] else f"max |diff| {r['max_diff']:.2g}"
        print(f"| tflite {r['precision']} | {r['threads']} | {r['partitions'][0]} → {r['partitions'][1]} | "
              f"{r['old_ms']:.4f} | {r['new_ms']:.4f} | {r['new_ms'] / r['old_ms']:.3f} | {outputs} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

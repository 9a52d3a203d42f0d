"""Time `edgekit train all` (wall, whole suite) and each example; print the figures for the README.

Usage:
    .venv/bin/python benchmarks/bench_train.py [--jobs N] [--out DIR] [--quick]

Runs the real command in a fresh process (so TensorFlow's import and the worker start-up are
counted), then reads the per-example seconds from <out>/train_summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=None, help="passed to edgekit train (default: its default)")
    ap.add_argument("--out", default=None, help="artifacts dir (default: a temporary directory)")
    ap.add_argument("--quick", action="store_true", help="time the --quick suite instead")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="edgekit-bench-train-"))
    cmd = [sys.executable, "-m", "edgekit", "train", "all", "--out", str(out)]
    if args.jobs:
        cmd += ["--jobs", str(args.jobs)]
    if args.quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return proc.returncode
    summary = json.loads((out / "train_summary.json").read_text())
    print(f"# edgekit train all{' --quick' if args.quick else ''}: {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, jobs={summary['jobs']}")
    print("| example | metric | value | seconds (in its worker) |")
    print("|---|---|---|---|")
    for row in summary["examples"]:
        print(f"| {row['example']} | {row['metric']} | {row['value']:.4g} | {row['seconds']:.1f} |")
    print(f"| **total wall** (incl. start-up, TF import, workers) | | | **{wall:.1f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

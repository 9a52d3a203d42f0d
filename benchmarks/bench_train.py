"""Time `edgekit train all` (wall, whole suite) and each example; print the figures for the README.

Usage:
    .venv/bin/python benchmarks/bench_train.py [--jobs N] [--out DIR] [--quick] [--backend B]
                                               [--distribute MODE] [--replicas N] [NAME ...]

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
    ap.add_argument("--backend", default="tensorflow", help="Keras backend (default: tensorflow)")
    ap.add_argument("--distribute", default=None, help="a --distribute mode (default: none)")
    ap.add_argument("--replicas", type=int, default=2, help="with --distribute (default: 2)")
    ap.add_argument("names", nargs="*", default=["all"], help="examples (default: all)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="edgekit-bench-train-"))
    cmd = [sys.executable, "-m", "edgekit", "train", *args.names, "--out", str(out), "--backend", args.backend]
    if args.distribute:
        cmd += ["--distribute", args.distribute, "--replicas", str(args.replicas)]
    if args.jobs:
        cmd += ["--jobs", str(args.jobs)]
    if args.quick:
        cmd.append("--quick")
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or not (out / "train_summary.json").exists():  # 1: a bar missed
        print(proc.stderr[-2000:], file=sys.stderr)
        return proc.returncode
    summary = json.loads((out / "train_summary.json").read_text())
    print(f"# {' '.join(cmd[3:])}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"jobs={summary['jobs']}, backend={summary.get('backend')}, distribute={summary.get('distribute')}, "
          f"load average before/after {load0:.2f}/{os.getloadavg()[0]:.2f}")
    print("| example | metric | value | seconds (in its worker) | quality bar met |")
    print("|---|---|---|---|---|")
    for row in summary["examples"]:
        met = {True: "yes", False: "NO", None: "-"}[row["quality_met"]]
        print(f"| {row['example']} | {row['metric']} | {row['value']:.4g} | {row['seconds']:.1f} | {met} |")
    print(f"| **total wall** (incl. start-up, imports, workers) | | | **{wall:.1f}** | |")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

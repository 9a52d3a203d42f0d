"""``edgekit bench DIR... [--threads 1|all|both] [--budget SEC] [--repeat N]`` (standard library only at
import time). Progress (a line per case with the ETA) goes to stderr, the table to stdout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgekit.core.formats import FORMATS


def register(subparsers) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench", help="latency, throughput, size, load time and memory of every export, against Keras",
        description="Benchmark every exported variant (TF.js on cpu and wasm) and the raw runtime calls "
                    "without edgekit's adapter, against Keras model.predict, a direct Keras call and the "
                    "SavedModel signature: p50/p99 latency at batch 1, rows/s at a batch up to 1024 (the "
                    "largest power of two whose call takes about 0.25 s), load time, file size, peak RSS of "
                    "a process running only that model, the parity status from report.json, the graph's "
                    "FLOPs and each row's GFLOP/s and % of this machine's fp32/int8 GEMM peak (measured "
                    "in the same run), and the adapter's overhead paired with the raw call. Writes "
                    "bench.json and prints a table; a line per case with the ETA on stderr. A variant "
                    "that fails still gets its row; cases that do not fit --budget "
                    "get skipped rows. Exit 0 if no row is an error, 1 if any is, 2 for bad input.")
    p.add_argument("dirs", nargs="+", metavar="DIR", type=Path,
                   help="an artifacts dir, an example dir or an exports dir")
    p.add_argument("--threads", choices=("1", "all", "both"), default="both",
                   help="runtime threads: 1, all cores, or both runs (default both)")
    p.add_argument("--repeat", type=int, default=200, metavar="N",
                   help="at least N timed batch-1 calls per row, after warm-up (default 200)")
    p.add_argument("--min-time", type=float, default=0.5, metavar="SEC",
                   help="and at least SEC seconds of timed batch-1 calls per row (default 0.5)")
    p.add_argument("--max-time", type=float, default=20.0, metavar="SEC",
                   help="stop a row's batch-1 loop after SEC seconds once it has 5 calls (default 20)")
    p.add_argument("--budget", type=float, default=240.0, metavar="SEC",
                   help="total seconds for the run (default 240; 0 = no limit): cases run cheapest-first "
                        "(TFLite/ONNX, then the Keras baselines and TF.js wasm, then Core ML's reference "
                        "evaluator and TF.js cpu), each with a fair share of what is left; cases that no "
                        "longer fit are listed as skipped for the budget")
    p.add_argument("--compare-exports", action="store_true",
                   help="also convert each model.keras with Keras' own model.export(format='litert'/'onnx') "
                        "and the raw converters at their defaults (TFLiteConverter, tf2onnx), and time "
                        "those files next to edgekit's: conversion time, size, latency (default off; "
                        "the conversions count against --budget)")
    p.add_argument("--tune", action="store_true",
                   help="first choose each TFLite/ONNX file's threads (1 or all cores) and ONNX Runtime "
                        "graph-optimisation level by measurement and record them in the manifest "
                        "('tuning' per artifact); edgekit.load applies them by default (default off)")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=None, metavar="FORMAT",
                   help=f"only these formats (default: all of {', '.join(FORMATS)}; baselines always run)")
    p.add_argument("--no-baselines", action="store_true", help="skip the Keras and SavedModel baselines")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS probe processes")
    p.add_argument("--unsafe", action="store_true",
                   help="load model.keras with safe_mode=False (runs any Lambda code in the file: only "
                        "for files you trust; default off, a Lambda model's Keras rows are errors)")
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="where to write bench.json (default: DIR/bench.json, first DIR)")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from edgekit.bench.run import run, write
    from edgekit.bench.timing import Budget
    from edgekit.core.errors import UsageError
    from edgekit.report.bench_tables import format_checks, format_compare, format_floor, format_table, summary

    if args.repeat < 1:
        raise UsageError("--repeat must be >= 1", got=args.repeat, expected=">= 1")
    if args.budget < 0:
        raise UsageError("--budget must be >= 0 (0 = no limit)", got=args.budget, expected=">= 0 seconds")
    if args.min_time < 0 or args.max_time <= 0:
        raise UsageError("--min-time must be >= 0 and --max-time > 0", got=(args.min_time, args.max_time))
    out = args.out or args.dirs[0] / "bench.json"
    if out.exists() and out.is_dir():
        raise UsageError("--out is a directory", got=str(out), expected="a file path for bench.json")
    threads = ("1", "all") if args.threads == "both" else (args.threads,)
    budget = Budget(repeat=args.repeat, min_time=args.min_time, max_time=args.max_time)
    doc = run(args.dirs, threads=threads, budget=budget, formats=args.formats,
              baselines=not args.no_baselines, rss=not args.no_rss, unsafe=args.unsafe,
              log=lambda msg: print(msg, file=sys.stderr, flush=True), total_budget=args.budget or None,
              compare_exports=args.compare_exports, tune=args.tune)
    print(format_table(doc["rows"]))
    floor = format_floor(doc)
    if floor:
        print("\n" + floor)
    compare = format_compare(doc["rows"])
    if compare:
        print("\nedgekit's files vs Keras' own exports and the raw converters (defaults):")
        print(compare)
    if doc["checks"]:
        print("\ntargets (reported, not enforced):")
        print("\n".join("  " + s for s in summary(doc["checks"])))
        print(format_checks(doc["checks"]))
    write(doc, out)
    bad = sum(r["status"] == "error" for r in doc["rows"])
    skipped = sum(r["status"] == "skipped" for r in doc["rows"])
    print(f"\n{len(doc['rows'])} rows, {bad} error, {skipped} skipped for the budget in {doc['seconds']:.1f} s; "
          f"wrote {out}")
    return 1 if bad else 0

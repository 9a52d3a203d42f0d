"""``edgekit verify`` (also ``python -m edgekit.runtime verify`` on a device).

A run merges into the report already there: its rows replace those with the same (example,
format, precision, runtime, backend), the others stay unless their file changed (then ``stale``)
or is gone (dropped); ``--fresh`` starts over. The run holds each export directory's run lock
(:mod:`edgekit.core.lock`): an export cannot swap files under it, nor another verify mix reports.

Standard library only at import time; numpy and the runtimes load when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgekit.core.formats import FORMATS


def register(subparsers) -> None:
    """Add the ``verify`` subcommand."""
    v = subparsers.add_parser(
        "verify", help="run every exported file on its runtime and compare with Keras",
        description="Run every exported model on its runtime (TF.js on cpu and wasm), compare with the "
                    "Keras outputs in reference.npz and print the parity table. Exit 0 if every row "
                    "passes, 1 if any fails or errors, 2 for bad input.")
    v.add_argument("dirs", nargs="+", metavar="DIR", type=Path,
                   help="an artifacts dir, an example dir or an exports dir")
    v.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="where to write report.json (default: DIR/report.json, first DIR)")
    v.add_argument("--md", type=Path, default=None, metavar="PATH",
                   help="where to write report.md (default: DIR/report.md, first DIR)")
    v.add_argument("--formats", nargs="+", choices=FORMATS, default=None, metavar="FORMAT",
                   help=f"only these formats (default: all of {', '.join(FORMATS)})")
    v.add_argument("--tolerance", type=Path, default=None, metavar="FILE",
                   help='JSON overrides of the tolerance policy, e.g. {"tflite/fp16": {"*": {"atol": 0.02}}} '
                        "(default: the built-in policy, parity/tolerance.py)")
    v.add_argument("--jobs", type=int, default=2, help="files verified concurrently (default 2)")
    v.add_argument("--inputs", type=Path, default=None, metavar="FILE.npz",
                   help="golden inputs for this run, keyed by input name in the inputs' dtypes; outputs are "
                        "computed with Keras (default: each export's golden file)")
    v.add_argument("--int-range", default=None, metavar="LO,HI",
                   help="synthesise integer inputs in [LO, HI) for this run (default: the export's golden file)")
    v.add_argument("--min-rows", type=int, default=8, metavar="N",
                   help="a row that compared fewer golden rows is 'insufficient', not a pass (default 8)")
    v.add_argument("--unsafe", action="store_true",
                   help="load .keras files holding Lambda layers when outputs must be computed (runs their code)")
    v.add_argument("--browser", action="store_true",
                   help="also run every TF.js export in headless Chromium (webgl, wasm, cpu) and add "
                        "tfjs-browser rows (and a screenshot of the demo page per example; default: off)")
    v.add_argument("--fresh", action="store_true",
                   help="write a new report.json/md with this run's rows only (default: merge into the report "
                        "there, keeping earlier rows of other formats whose files are unchanged)")
    v.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from edgekit.core.errors import UsageError
    from edgekit.core.lock import run_lock
    from edgekit.parity.inputs import parse_int_range
    from edgekit.parity.targets import find_manifests
    from edgekit.parity.tolerance import load_overrides

    overrides = load_overrides(args.tolerance) if args.tolerance else None
    if args.jobs < 1:
        raise UsageError("--jobs must be >= 1", got=args.jobs, expected=">= 1")
    int_range = parse_int_range(args.int_range)
    export_dirs = [m.parent for d in args.dirs for m in find_manifests(d)]
    # a read-only export (its report written elsewhere with --json/--md) is verified without its lock
    with run_lock(export_dirs, command="edgekit verify", required=False):
        return _run(args, overrides, int_range)


def _run(args: argparse.Namespace, overrides, int_range) -> int:
    """Verify, print the table, merge into the report there and write it (the run lock is held)."""
    from edgekit.parity.verify import verify
    from edgekit.report.files import merge_reports, write_reports
    from edgekit.report.tables import format_table, summary_line

    # this process only verifies: coremltools may skip its TensorFlow import (light_coreml)
    result = verify(args.dirs, formats=args.formats, overrides=overrides, jobs=args.jobs, light_coreml=True,
                    inputs=args.inputs, int_range=int_range, min_rows=args.min_rows, unsafe=args.unsafe)
    first = args.dirs[0]
    if args.browser:
        from edgekit.web.browser import check_browser, merge_into

        browser = check_browser(args.dirs, screenshots=first / "screenshots", overrides=overrides,
                                min_rows=args.min_rows)
        merge_into(result, browser)
        print("browser backends: " + ", ".join(f"{k}: {v}" for k, v in browser.backends.items()))
    json_path = args.json or first / "report.json"
    md_path = args.md or first / "report.md"
    print(format_table(result.rows))
    origins: dict = {}
    for r in result.rows:
        origins.setdefault(r["example"], (r.get("inputs_origin") or {}, r.get("reference") or "keras"))
    for name, (origin, ref) in origins.items():
        if origin and not all("edgekit train" in o for o in origin.values()):
            print(f"{name}: golden inputs: " + "; ".join(f"{k}: {v}" for k, v in origin.items()) +
                  f"; reference outputs: {ref}")
    print(summary_line(result.rows, result.seconds))
    rows, parity = merge_reports(json_path, result.rows, result.parity, fresh=args.fresh)
    write_reports(rows, parity, json_path, md_path, result.seconds)
    kept = len(rows) - len(result.rows)
    stale = sum(r["status"] == "stale" for r in rows)
    extra = f" ({kept} row(s) kept from earlier runs" + (f", {stale} stale" if stale else "") + \
        "; --fresh starts over)" if kept > 0 else ""
    print(f"wrote {json_path} and {md_path}{extra}")
    return 0 if result.passed else 1

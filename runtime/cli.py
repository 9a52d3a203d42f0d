"""``edgekit verify`` and ``edgekit report`` (also ``python -m runtime verify|report``).

Standard library only at import time; numpy and the runtimes load when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS = ("tflite", "coreml", "tfjs", "onnx")


def register(subparsers) -> None:
    """Add the ``verify`` and ``report`` subcommands."""
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
                        "(default: the built-in policy, runtime/tolerance.py)")
    v.add_argument("--jobs", type=int, default=2, help="files verified concurrently (default 2)")
    v.add_argument("--browser", action="store_true",
                   help="also run every TF.js export in headless Chromium (webgl, wasm, cpu) and add "
                        "tfjs-browser rows and screenshots (default: off)")
    v.set_defaults(func=_verify)

    r = subparsers.add_parser(
        "report", help="write report.html: parity table, training plots, parity scatters",
        description="Write a self-contained report.html (works offline) from DIR/report.json, running "
                    "verify first if the report is missing or older than an export manifest.")
    r.add_argument("dir", nargs="?", type=Path, default=Path("artifacts"), metavar="DIR",
                   help="the artifacts dir (default: artifacts)")
    r.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="the HTML file to write (default: DIR/report.html)")
    r.set_defaults(func=_report)


def _verify(args: argparse.Namespace) -> int:
    from edgekit.errors import UsageError
    from runtime.report import format_table, summary_line, write_reports
    from runtime.tolerance import load_overrides
    from runtime.verify import verify

    overrides = load_overrides(args.tolerance) if args.tolerance else None
    if args.jobs < 1:
        raise UsageError("--jobs must be >= 1", got=args.jobs, expected=">= 1")
    # this process only verifies: coremltools may skip its TensorFlow import (light_coreml)
    result = verify(args.dirs, formats=args.formats, overrides=overrides, jobs=args.jobs, light_coreml=True)
    first = args.dirs[0]
    if args.browser:
        from runtime.browser import check_browser, merge_into

        browser = check_browser(args.dirs, screenshots=first / "screenshots", overrides=overrides)
        merge_into(result, browser)
        print("browser backends: " + ", ".join(f"{k}: {v}" for k, v in browser.backends.items()))
    json_path = args.json or first / "report.json"
    md_path = args.md or first / "report.md"
    print(format_table(result.rows))
    print(summary_line(result.rows, result.seconds))
    write_reports(result.rows, result.parity, json_path, md_path, result.seconds)
    print(f"wrote {json_path} and {md_path}")
    return 0 if result.passed else 1


def _report(args: argparse.Namespace) -> int:
    from runtime.report import format_table, load_reports, summary_line, write_html, write_reports
    from runtime.verify import find_manifests, verify

    root = args.dir
    json_path = root / "report.json"
    manifests = find_manifests(root)
    stale = not json_path.is_file() or not (root / "parity.npz").is_file() or any(
        m.stat().st_mtime > json_path.stat().st_mtime for m in manifests)
    if stale:
        print(f"{json_path} missing or older than the exports: running verify first")
        result = verify([root], light_coreml=True)
        rows, parity = result.rows, result.parity
        write_reports(rows, parity, json_path, root / "report.md", result.seconds)
        print(format_table(rows))
    else:
        rows, parity = load_reports(json_path)
    out = write_html(rows, parity, root, args.out or root / "report.html")
    print(summary_line(rows))
    print(f"wrote {out}")
    return 0

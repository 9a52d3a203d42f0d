"""``edgekit report``: report.html from report.json (running verify first when it is stale).

Standard library only at import time.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``report`` subcommand."""
    r = subparsers.add_parser(
        "report", help="write report.html: parity table, training plots, parity scatters",
        description="Write a self-contained report.html (works offline) from DIR/report.json, running "
                    "verify first if the report is missing or older than an export manifest.")
    r.add_argument("dir", nargs="?", type=Path, default=Path("artifacts"), metavar="DIR",
                   help="the artifacts dir (default: artifacts)")
    r.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="the HTML file to write (default: DIR/report.html)")
    r.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from edgekit.parity.verify import find_manifests, verify
    from edgekit.report.files import load_reports, write_reports
    from edgekit.report.html import write_html
    from edgekit.report.tables import format_table, summary_line

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

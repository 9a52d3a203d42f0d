"""``edgekit check MODEL [--formats ...] [--json PATH] [--opset N] [--tflite-select-tf-ops]``.

What each format will make of MODEL, before converting anything: the graph's ops and whether
each converter and runtime supports them, the rewrites edgekit applies, the dtype contract and a
verdict per format (:mod:`edgekit.export.check`). Standard library only at module level.
Exit codes: 0 every format ok, 1 some format is predicted to fail or be unverifiable, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(subparsers) -> None:
    """Add the ``check`` subcommand."""
    from edgekit.core.formats import FORMATS

    p = subparsers.add_parser(
        "check", help="predict, without converting, which formats a model will convert to and run in",
        description="Read MODEL's serving graph and say, per format, which ops the converter and the runtime "
                    "support, which rewrites edgekit applies, the dtypes each file takes and gives, and whether "
                    "export will give a verified file. Nothing is converted or written.")
    p.add_argument("model", type=Path, metavar="MODEL",
                   help="a SavedModel directory, an artifacts/<example> directory or a .keras file")
    p.add_argument("--formats", type=_csv, default=None, metavar="LIST",
                   help=f"comma-separated formats (default: all of {','.join(FORMATS)})")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the report as JSON")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset export would use (default 17)")
    p.add_argument("--tflite-select-tf-ops", action="store_true",
                   help="allow TFLite Flex ops, as export --tflite-select-tf-ops would")
    p.add_argument("--unsafe", action="store_true", help="load a .keras holding Lambda layers (trusted files only)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from edgekit.core.fsutil import atomic_file
    from edgekit.export.check import check

    report = check(args.model, formats=args.formats, opset=args.opset,
                   select_tf_ops=args.tflite_select_tf_ops, unsafe=args.unsafe)
    print(f"{args.model}: {report.graph}, {sum(report.ops.values())} ops of {len(report.ops)} kinds "
          f"({report.seconds:.1f} s)")
    print(report.table())
    for line in report.predicted_failures():
        print(f"predicted: {line}")
    if args.json is not None:
        with atomic_file(args.json, "w") as tmp:
            Path(tmp).write_text(report.to_json() + "\n")
    sys.stdout.flush()
    return 0 if report else 1

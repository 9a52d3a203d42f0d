"""``edgekit explain EXPORT_DIR [--format F] [--precision P] [--keras MODEL] [--json PATH] [--markdown]``.

Where each exported variant diverges from its Keras model: per layer, the max abs and relative
error against Keras, the tolerance and the first layer past it with its op
(:mod:`edgekit.parity.explain`), written to ``explain.json`` in the export dir (``edgekit report``
draws it). Standard library only at module level.
Exit codes: 0 explained (divergent or not), 1 a variant could not be run, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(subparsers) -> None:
    """Add the ``explain`` subcommand."""
    from edgekit.core.formats import FORMATS, Precision

    precisions = [p.value for p in Precision]

    p = subparsers.add_parser(
        "explain", help="per-layer comparison of each exported variant with Keras: where it diverges",
        description="Run the golden inputs through the Keras model with every layer's output exposed and "
                    "through each exported variant with its intermediate tensors exposed, match tensors to "
                    "layers by name and print, per layer, the max abs and relative error against Keras, "
                    "the tolerance and the first divergent layer with its op. Needs the Keras model the "
                    "export came from (source/model.keras).")
    p.add_argument("export_dir", type=Path, metavar="EXPORT_DIR", help="an exports dir or an example dir")
    p.add_argument("--format", dest="formats", type=_csv, default=None, metavar="F[,F]",
                   help=f"only these formats (default: every one in the manifest; {','.join(FORMATS)})")
    p.add_argument("--precision", dest="precisions", type=_csv, default=None, metavar="P[,P]",
                   help=f"only these precisions (default: all; {','.join(precisions)})")
    p.add_argument("--tolerance", type=Path, default=None, metavar="FILE",
                   help="JSON overrides of the tolerance policy, as for verify (default: the built-in policy)")
    p.add_argument("--keras", type=Path, default=None, metavar="MODEL.keras",
                   help="compare with this Keras model instead of the export's own (e.g. the model before a change)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="where to write the report as JSON (default: explain.json in the export dir, which "
                        "edgekit report draws as per-layer error curves)")
    p.add_argument("--markdown", action="store_true", help="print the tables as GitHub Markdown")
    p.add_argument("--unsafe", action="store_true", help="load a .keras holding Lambda layers (trusted files only)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:

    from edgekit.core.errors import UsageError
    from edgekit.core.formats import Precision
    from edgekit.core.lock import run_lock
    from edgekit.parity.explain import explain
    from edgekit.parity.tolerance import load_overrides
    from edgekit.runtime.discover import find_manifests

    known = [p.value for p in Precision]
    bad = sorted(set(args.precisions or []) - set(known))
    if bad:
        raise UsageError("unknown precision", got=bad, expected=known)
    overrides = load_overrides(args.tolerance) if args.tolerance else None
    # The export's run lock for the whole run: explain reads its files and writes explain.json
    # into it, so a concurrent export cannot swap variants underneath (verify does the same).
    with run_lock(find_manifests(Path(args.export_dir))[0].parent, command="edgekit explain", required=False):
        return _explain(args, explain, overrides)


def _explain(args: argparse.Namespace, explain, overrides) -> int:
    import json

    from edgekit.core.errors import UsageError
    from edgekit.core.fsutil import atomic_file

    report = explain(args.export_dir, formats=args.formats, precisions=args.precisions, overrides=overrides,
                     unsafe=args.unsafe, keras=args.keras)
    if not report.variants:
        raise UsageError("no variant in the export matches --format/--precision", got=str(args.export_dir),
                         expected="a format and precision the manifest lists")
    print(f"{report.source}: {report.keras_layers} Keras layers, {len(report.variants)} variants "
          f"({report.seconds:.1f} s)")
    print(report.table(markdown=args.markdown))
    if report.skipped_layers:
        print("not compared: " + ", ".join(f"{k} ({v})" for k, v in report.skipped_layers.items()))
    out = args.json if args.json is not None else Path(report.source) / "explain.json"
    with atomic_file(out, "w") as tmp:
        Path(tmp).write_text(json.dumps(report.to_dict(), indent=1, default=float) + "\n")
    print(f"wrote {out}")
    sys.stdout.flush()
    return 1 if any(v.status == "error" for v in report.variants) else 0

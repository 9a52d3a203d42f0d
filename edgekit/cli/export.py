"""``edgekit export SOURCE... [--formats ...] [--precisions ...] [--out DIR] [--calibration FILE]
[--opset N]``.

Standard library only at module level (``edgekit --help`` must not import TensorFlow).
Exit codes: 0 every variant produced (skipped ones are listed), 1 a converter failed on
some variant (the others were still produced and are in the manifest), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgekit.core.fmt import human_size as _size


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(subparsers) -> None:
    """Add the ``export`` subcommand."""
    from edgekit.export import registry

    regs = registry.formats()
    table = "; ".join(f"{n}: {','.join(p.value for p in e.precisions)}" for n, e in regs.items())
    p = subparsers.add_parser(
        "export", help="export SavedModels to TFLite, Core ML, TF.js and ONNX",
        description="Export an artifacts/<example> directory or any SavedModel (serving signature, "
                    f"float32 inputs) to every format and precision. Formats and precisions: {table}.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="artifacts/<example> directory or SavedModel directory (a directory of "
                        "examples, e.g. artifacts/, means every example in it)")
    p.add_argument("--formats", type=_csv, default=None, metavar="LIST",
                   help=f"comma-separated formats (default: all of {','.join(regs)})")
    p.add_argument("--precisions", type=_csv, default=None, metavar="LIST",
                   help=f"comma-separated precisions (default: every one each format supports; "
                        f"valid: {','.join(registry.all_precisions())})")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="export directory (default: <example>/exports; with several SOURCEs, DIR/<name>)")
    p.add_argument("--calibration", type=Path, default=None, metavar="FILE.npz|.npy",
                   help="representative inputs for int8 (default: the example's calibration.npz)")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17)")
    p.add_argument("--verbose", action="store_true", help="show converter output")
    p.set_defaults(func=handler)




def summary_table(report) -> str:
    """The per-variant summary printed after an export (format, precision, size, seconds, status)."""
    from edgekit.core.table import render

    rows = []
    for r in report.results:
        status = r.status if r.ok else f"{r.status}: {r.error}"
        if len(status) > 160:
            status = status[:157] + "..."
        rows.append((r.format, r.precision, _size(r.size_bytes), f"{r.seconds:.2f}", status))
    return render(("format", "precision", "size", "seconds", "status"), rows, right=(2, 3), rule=False)


def _validate_all(args) -> list[tuple[Path, Path | None]]:
    """Check every SOURCE and output before exporting anything (bad input writes nothing)."""
    from edgekit.export import registry
    from edgekit.export import source as source_mod

    registry.plan(args.formats, args.precisions)
    sources = []
    for s in map(Path, args.sources):
        # A directory of examples (e.g. artifacts/) stands for every example in it.
        is_plain = s.is_dir() and not (s / "example.json").is_file() and not (s / "saved_model.pb").is_file()
        members = sorted(p for p in s.iterdir() if (p / "example.json").is_file()) if is_plain else []
        sources.extend(members or [s])
    jobs = []
    names = set()
    for s in sources:
        sm, example = source_mod.resolve(s)
        out = args.out
        if args.out is not None and len(sources) > 1:
            name = example.name if example is not None else sm.name
            if name in names:
                from edgekit.core.errors import UsageError

                raise UsageError("two SOURCEs would export to the same directory", got=str(args.out / name),
                                 expected="distinct SOURCE names, or one --out per run")
            names.add(name)
            out = args.out / name
        jobs.append((s, out))
    return jobs


def handler(args: argparse.Namespace) -> int:
    """Run the export for every SOURCE; print a summary table per SOURCE."""
    from edgekit.export.api import export_model

    jobs = _validate_all(args)
    code = 0
    for src, out in jobs:
        report = export_model(src, out=out, formats=args.formats, precisions=args.precisions,
                              calibration=args.calibration, opset=args.opset, quiet=not args.verbose)
        print(f"{src} -> {report.out_dir} ({report.seconds:.1f} s)")
        print(summary_table(report))
        print(f"manifest: {report.manifest_path}")
        sys.stdout.flush()
        if not report.ok:
            code = 1
    return code

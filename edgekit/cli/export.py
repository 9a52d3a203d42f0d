"""``edgekit export SOURCE... [--formats ...] [--precisions ...] [--out DIR] [--calibration FILE]
[--inputs FILE.npz] [--input-shape NAME=D1xD2...] [--int-range LO,HI] [--unsafe] [--opset N]
[--tflite-select-tf-ops] [--clean]``.

SOURCE is a ``.keras`` file (trained on any backend; loaded under TensorFlow), an
``artifacts/<example>`` directory, a directory of examples, or a SavedModel directory.

Standard library only at module level (``edgekit --help`` must not import TensorFlow).
Into an existing export only the chosen variants are replaced; the others stay (marked stale in
the manifest when the source changed since they were made); ``--clean`` starts from an empty
export directory. Exit codes: 0 every variant produced (skipped ones are listed), 1 a converter failed on
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
        "export", help="export Keras models and SavedModels to TFLite, Core ML, TF.js and ONNX",
        description="Export a .keras file (saved on any Keras backend), an artifacts/<example> directory or "
                    "any SavedModel (serving signature; float, integer or bool inputs) to every format and "
                    f"precision. Formats and precisions: {table}. A .keras source gets a golden file of "
                    "Keras' own predictions (reference.npz) that verify compares every format with.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="model.keras, artifacts/<example> directory or SavedModel directory (a directory of "
                        "examples, e.g. artifacts/, means every example in it)")
    p.add_argument("--formats", type=_csv, default=None, metavar="LIST",
                   help=f"comma-separated formats (default: all of {','.join(regs)})")
    p.add_argument("--precisions", type=_csv, default=None, metavar="LIST",
                   help=f"comma-separated precisions (default: every one each format supports; "
                        f"valid: {','.join(registry.all_precisions())})")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="export directory (default: <example>/exports, <stem>_exports beside a .keras or "
                        "SavedModel; with several SOURCEs, DIR/<name>)")
    p.add_argument("--calibration", type=Path, default=None, metavar="FILE.npz|.npy",
                   help="representative inputs for int8 (default: --inputs, else the example's calibration.npz)")
    p.add_argument("--inputs", type=Path, default=None, metavar="FILE.npz",
                   help="golden inputs keyed by input name, in the inputs' dtypes (default: synthesised: "
                        "uint8 0-255, ids in [0, vocab) of the Embedding they feed, floats standard normal "
                        "or from the calibration data's statistics)")
    p.add_argument("--input-shape", action="append", default=None, metavar="NAME=D1xD2...",
                   help="fix unknown non-batch dims of an input, e.g. ids=128 or image=96x96x3 (repeatable)")
    p.add_argument("--int-range", default=None, metavar="LO,HI",
                   help="synthesise integer inputs in [LO, HI) (default: from the model's Embedding layers)")
    p.add_argument("--unsafe", action="store_true",
                   help="load a .keras holding Lambda layers or other stored code (safe_mode off: the file's "
                        "code runs; only for files you trust)")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17)")
    p.add_argument("--tflite-select-tf-ops", action="store_true",
                   help="let TFLite use Flex (TensorFlow) ops for what has no builtin (default: builtins only; "
                        "a Flex file loads only in a runtime with the Flex delegate, not ai-edge-litert or a "
                        "stock Android/Pi LiteRT; recorded in the manifest)")
    p.add_argument("--keep-float", default=None, metavar="auto|LAYER,...",
                   help="TFLite int8 and ONNX int8_dynamic: keep these Keras layers in float, or 'auto': the "
                        "worst ones until the variant meets verify's tolerance (default: everything int8; "
                        "recorded in the manifest)")
    p.add_argument("--clean", action="store_true",
                   help="start from an empty export directory (default: an existing export keeps the variants "
                        "this run does not convert, with their manifest entries)")
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
    from edgekit.core.errors import UsageError
    from edgekit.export import registry
    from edgekit.export import source as source_mod
    from edgekit.export.keras_source import parse_input_shapes
    from edgekit.parity.inputs import parse_int_range

    registry.plan(args.formats, args.precisions)
    parse_input_shapes(args.input_shape)
    parse_int_range(args.int_range)
    sources = []
    for s in map(Path, args.sources):
        # A directory of examples (e.g. artifacts/) stands for every example in it.
        is_plain = s.is_dir() and not (s / "example.json").is_file() and not (s / "saved_model.pb").is_file()
        members = sorted(p for p in s.iterdir() if (p / "example.json").is_file()) if is_plain else []
        sources.extend(members or [s])
    jobs = []
    names = set()
    for s in sources:
        spec = source_mod.classify(s)
        out = args.out
        if args.out is not None and len(sources) > 1:
            name = spec.name
            if name in names:
                raise UsageError("two SOURCEs would export to the same directory", got=str(args.out / name),
                                 expected="distinct SOURCE names, or one --out per run")
            names.add(name)
            out = args.out / name
        jobs.append((s, out))
    return jobs


def _kept_line(manifest_path: Path) -> str:
    """``kept 6 earlier variant(s) ...; 2 stale (...)``: what a partial export left in place ("" if none)."""
    import json

    try:
        data = json.loads(Path(manifest_path).read_text())
    except (OSError, ValueError):
        return ""
    if not data.get("kept"):
        return ""
    names = [f"{a['format']} {a['precision']}" for a in data.get("artifacts", [])]
    stale = [f"{a['format']} {a['precision']}" for a in data.get("artifacts", []) if a.get("stale")]
    line = f"kept {data['kept']} earlier variant(s) (now {len(names)} in the export; --clean starts over)"
    if stale:
        line += (f"; stale, made from another version of the source: {', '.join(stale)} "
                 "(re-export them, or --clean)")
    return line


def _print_preflight(src, lines: list[str]) -> None:
    """Say before converting which formats ``edgekit check`` expects to fail, and why."""
    for line in lines:
        print(f"{src}: check predicts {line}")
    sys.stdout.flush()


def handler(args: argparse.Namespace) -> int:
    """Run the export for every SOURCE; print a summary table per SOURCE."""
    from edgekit.export.api import export_model

    jobs = _validate_all(args)
    if args.unsafe:
        print("edgekit export: warning: --unsafe: Lambda layers and other code stored in a .keras file will "
              "run in this process; use it only for files you trust", file=sys.stderr)
    code = 0
    for src, out in jobs:
        report = export_model(src, out=out, formats=args.formats, precisions=args.precisions,
                              calibration=args.calibration, opset=args.opset, inputs=args.inputs,
                              input_shapes=args.input_shape, int_range=args.int_range, unsafe=args.unsafe,
                              tflite_select_tf_ops=args.tflite_select_tf_ops, quiet=not args.verbose,
                              clean=args.clean, keep_float=args.keep_float,
                              on_preflight=lambda lines, s=src: _print_preflight(s, lines))
        print(f"{src} -> {report.out_dir} ({report.seconds:.1f} s)")
        print(summary_table(report))
        if report.reference_error:
            print(f"no golden file: {report.reference_error} (pass it to edgekit verify)")
        kept = _kept_line(report.manifest_path)
        if kept:
            print(kept)
        print(f"manifest: {report.manifest_path}")
        sys.stdout.flush()
        if not report.ok:
            code = 1
    return code

"""``export_model``: one SOURCE to every chosen (format, precision), with a manifest.

Order of work: every check on the user's input first (formats, precisions, SOURCE,
output location, calibration data) — a bad input raises an :class:`EdgekitError`
(exit 2) before anything is written. Then the SavedModel is loaded once and each variant
is converted into a staging directory; a variant whose converter fails is recorded and
the others still run. ``manifest.json`` is written last. Into a new export directory (or with
``clean=True``) the staging directory is renamed as a whole; into an existing export only the
variants this run converted are swapped in and the manifest is merged (:mod:`edgekit.export.partial`:
the other variants stay byte for byte, marked stale when the source changed). An interrupted run
leaves the old export untouched. One run at a time per export directory
(:func:`edgekit.core.lock.run_lock` on ``<out>.lock``).

Safe to call from tests: no global state besides the registry; converter chatter is
silenced only for the duration of the call (``quiet=True``).
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from edgekit.core.errors import InputError, OutputError, UsageError
from edgekit.core.fsutil import TMP_PREFIX, atomic_dir, clean_stale_tmp, sha256_tree, tree_size
from edgekit.core.lock import run_lock
from edgekit.core.text import error_lines
from edgekit.core.version import __version__
from edgekit.export import partial, registry
from edgekit.export import source as source_mod
from edgekit.export.base import ExportOptions, ExportReport, Precision, VariantResult
from edgekit.export.golden import golden_for, write_reference
from edgekit.export.quiet import quiet_output as _quiet
from edgekit.export.records import metadata as _metadata
from edgekit.export.records import source_entry as _source_entry

OPSET_RANGE = (10, 18)  # tf2onnx 1.17 converts up to opset 18; quantize_dynamic needs >= 10
#: the variants --keep-float acts on (full-integer TFLite, dynamic-range ONNX)
KEEP_FLOAT_VARIANTS = (("tflite", "int8"), ("onnx", "int8_dynamic"))
CALIBRATION_HOW = ("--calibration FILE.npz (arrays keyed by input name, shape (N, ...), in the inputs' "
                   "dtypes) or FILE.npy for a single-input model, or --inputs FILE.npz")


def _check_out(out: Path, protected: Path | None) -> None:
    """Refuse output locations that cannot be written or whose replacement would lose data
    (``protected``: the SavedModel directory or the ``.keras`` file exported; None for a live model)."""
    out_abs = out.resolve()
    sm_abs = protected.resolve() if protected is not None else None
    if sm_abs is not None and (out_abs == sm_abs or sm_abs in out_abs.parents or out_abs in sm_abs.parents):
        what = "the .keras file" if sm_abs.is_file() else "the SavedModel"
        raise OutputError(f"output directory overlaps {what}", got=str(out),
                          expected=f"a directory outside {what} (default: <example>/exports, <name>_exports)")
    if out.exists():
        if not out.is_dir():
            raise OutputError("output path is not a directory", got=str(out), expected="a directory")
        if any(out.iterdir()) and not (out / "manifest.json").is_file():
            raise OutputError("output directory is not empty and holds no edgekit manifest", got=str(out),
                              expected="a new or empty directory, or a previous edgekit export")
    anchor = out.parent
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir():
        raise OutputError("cannot create output directory", got=f"{out} ({anchor} is a file)",
                          expected="a writable location")
    try:  # os.access lies for root and read-only mounts: try it for real
        probe = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}probe-", dir=out if out.exists() else anchor)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError("output directory is not writable", got=f"{out} ({exc.strerror})",
                          expected="a directory you can write to") from exc


def export_model(source, out: Path | None = None, formats: list[str] | None = None,
                 precisions: list[str] | None = None, calibration: Path | None = None, opset: int = 17,
                 *, inputs: Path | None = None, input_shapes=None, int_range=None, unsafe: bool = False,
                 max_batch: int = 1024, tflite_select_tf_ops: bool = False, quiet: bool = True, progress=None,
                 on_preflight=None, keep_float=None, clean: bool = False, lock_wait: float | None = None,
                 _as_live: str | None = None) -> ExportReport:
    """Export SOURCE to every chosen format and precision and write ``manifest.json``.

    Args:
        source: a ``.keras`` file, a live ``keras.Model``, an ``artifacts/<example>`` directory or any
            SavedModel directory.
        out: export directory (default None: ``<example>/exports``; ``<savedmodel>_exports`` or
            ``<stem>_exports`` beside a SavedModel or ``.keras`` file; ``./<name>_exports`` for a live
            model). An existing export keeps the variants this run does not convert (``clean``).
        formats: format names (default None: every registered format).
        precisions: precision names (default None: every precision each format supports;
            full-integer int8 is then skipped, with a note, when there is no calibration data).
        calibration: representative data for int8 (default None: ``inputs`` if given, else the
            example's ``calibration.npz``).
        opset: ONNX opset (default 17; valid 10-18).
        inputs: golden inputs, ``.npz`` keyed by input name in the inputs' dtypes (default None:
            synthesised for a Keras source, see :mod:`edgekit.parity.inputs`).
        input_shapes: fix unknown non-batch dims of a Keras source: ``{"ids": (128,)}`` or
            ``["ids=128"]`` (default None).
        int_range: ``(lo, hi)`` or ``"LO,HI"``: integer inputs are synthesised in ``[lo, hi)``
            (default None: from the model's Embedding layers).
        unsafe: load a ``.keras`` holding Lambda layers (``safe_mode=False``; default False).
        max_batch: Core ML flexible batch upper bound (default 1024).
        tflite_select_tf_ops: let TFLite fall back to Flex (TensorFlow) ops (default False: builtins
            only; a Flex file loads only where the Flex delegate is linked in, recorded in the manifest).
        quiet: silence converter output during the run (default True).
        progress: optional ``callable(VariantResult)`` called after each variant.
        keep_float: ``"auto"`` or Keras layer names the full-integer int8 TFLite variant keeps in
            float (default None: everything int8; see :mod:`edgekit.export.quantdebug`).
        on_preflight: optional ``callable(list[str])`` called once before converting with
            ``edgekit check``'s predicted failures (one line per format; empty when all look fine).
        clean: start from an empty export directory: the previous export is replaced as a whole
            (default False: only the planned variants are replaced, the others and their manifest
            entries kept; see :mod:`edgekit.export.partial`).
        lock_wait: seconds to wait for another run holding ``<out>.lock`` before refusing (default
            None: ``$EDGEKIT_LOCK_WAIT``, else 60).

    Returns:
        An :class:`ExportReport`; ``report.ok`` is False if any variant failed.

    Raises:
        UsageError, InputError, OutputError: bad input, before anything is written; OutputError
            also when another run keeps the export directory locked for ``lock_wait`` seconds.
    """
    from edgekit.export import keras_source
    from edgekit.parity import inputs as golden_inputs

    t_start = time.perf_counter()
    variants = registry.plan(formats, precisions)
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise UsageError("ONNX opset out of range", got=opset,
                         expected=f"an integer {OPSET_RANGE[0]}-{OPSET_RANGE[1]}")
    if not isinstance(max_batch, int) or max_batch < 1:
        raise UsageError("max_batch must be a positive integer", got=max_batch, expected=">= 1")
    spec = source_mod.classify(source)
    shapes = keras_source.parse_input_shapes(input_shapes)
    keras_kind = spec.kind in ("keras", "live")
    if shapes and not keras_kind:
        raise UsageError("--input-shape needs a Keras source (a SavedModel's signature is fixed)",
                         got=spec.display, expected="a .keras file or a keras.Model")
    irange = golden_inputs.parse_int_range(int_range)
    from edgekit.export.quantdebug import parse_keep_float

    keep_float = parse_keep_float(keep_float)
    takes = [(f, p) for f, p in variants if (f, Precision(p).value) in KEEP_FLOAT_VARIANTS]
    if keep_float and not takes:
        raise UsageError("--keep-float applies to no variant of this run",
                         got=", ".join(f"{f} {Precision(p).value}" for f, p in variants),
                         expected="tflite int8 or onnx int8_dynamic among the planned variants")
    out = Path(out) if out is not None else source_mod.default_out(spec)
    _check_out(out, spec.saved_model_dir or spec.path)
    for opt, f in (("calibration", calibration), ("--inputs", inputs)):
        if f is not None and not Path(f).is_file():
            raise InputError(f"{opt} file does not exist", got=str(f),
                             expected=CALIBRATION_HOW if opt == "calibration" else golden_inputs.INPUTS_HOW)
    exporters = registry.formats()

    plan: Any = None
    src: Any = None
    with _quiet(quiet):
        if keras_kind:
            plan = keras_source.prepare(spec.kind, spec.model if spec.kind == "live" else spec.path, shapes, unsafe)
        else:
            src = source_mod.open_source(spec.path)
    infos = plan.inputs if plan is not None else src.inputs
    golden_file = golden_inputs.load_inputs(Path(inputs), infos) if inputs is not None else None
    t_loaded = time.perf_counter()
    needs = [(f, p) for f, p in variants if exporters[f].needs_calibration(p)]
    calib = None
    if calibration is not None or needs:
        calib = source_mod.load_calibration(infos, calibration, spec.example_dir)
    if calib is None and golden_file is not None:
        calib = (golden_file, f"--inputs {inputs}")
    skipped: dict[tuple, str] = {}
    if needs and calib is None:
        if precisions is not None:
            raise UsageError(f"{', '.join(f'{f} {p.value}' for f, p in needs)} needs calibration data and "
                             f"{spec.display} has no calibration.npz", expected=CALIBRATION_HOW)
        for v in needs:
            skipped[v] = f"no calibration data: pass {CALIBRATION_HOW}"
    golden = origin = None
    golden_error = None
    if plan is not None:
        golden, origin, golden_error = golden_for(infos, plan.model, golden_file, inputs, irange, calib)

    with run_lock(out, wait=lock_wait, command="edgekit export"):
        # leftovers of killed runs (staging dirs, a previous export parked between the two renames);
        # a live run's entries carry its pid and are spared
        clean_stale_tmp(out.parent)
        old = partial.previous(out, clean)
        with atomic_dir(out) if old is None else partial.staging(out) as tmp:
            results, data = _convert(tmp, plan, src, golden, origin, golden_error, variants, skipped, exporters,
                                     spec, calib, irange, opset=opset, max_batch=max_batch, inputs=inputs,
                                     unsafe=unsafe, tflite_select_tf_ops=tflite_select_tf_ops, quiet=quiet,
                                     keep_float=keep_float,
                                     progress=progress, on_preflight=on_preflight, as_live=_as_live,
                                     t_start=t_start, t_loaded=t_loaded)
            from edgekit.runtime import manifest

            if old is None:
                manifest.save(tmp / manifest.MANIFEST_NAME, data)
            else:
                replaced = {(r.format, r.precision) for r in results if r.status != "skipped"}
                same = manifest.source_identity(old.source) == manifest.source_identity(data["source"])
                keep = same and (plan is None or (inputs is None and bool((old.data.get("reference") or {})
                                                                          .get("path"))))
                order = [(f, p.value) for f, p in registry.plan(None, None)]
                data = partial.commit(out, tmp, old, data, replaced, order, keep)
    reference = data.get("reference")
    return ExportReport(source=Path(spec.display) if spec.path is None else spec.path, out_dir=out,
                        results=tuple(results), seconds=time.perf_counter() - t_start,
                        kind=_as_live and "live" or spec.kind,
                        reference_error=reference.get("error") if reference else None,
                        preflight=tuple(data.get("preflight") or ()))


def _convert(tmp: Path, plan, src, golden, origin, golden_error, variants, skipped, exporters, spec, calib,
             irange, *, opset, max_batch, inputs, unsafe, tflite_select_tf_ops, quiet, progress, on_preflight,
             keep_float=(),
             as_live, t_start, t_loaded) -> tuple[list[VariantResult], dict]:
    """Convert every planned variant into ``tmp``; returns the results and this run's manifest data."""
    results: list[VariantResult] = []
    artifacts, failures = [], []
    reference = None
    if plan is not None:
        from edgekit.export import keras_source

        with _quiet(quiet):
            src = keras_source.materialise(plan, tmp)
            reference = write_reference(tmp, src, golden, origin) if golden is not None else \
                {"error": golden_error}
    if as_live:
        src.kind, src.display_name = "live", as_live
    options = ExportOptions(opset=opset, max_batch=max_batch, calibration=calib[0] if calib else None,
                            calibration_origin=calib[1] if calib else "", metadata=_metadata(src),
                            tflite_select_tf_ops=bool(tflite_select_tf_ops), keep_float=tuple(keep_float))
    predicted = _preflight(src, variants, options, quiet)
    if on_preflight is not None:
        on_preflight(predicted)
    for fmt, prec in variants:
        exp = exporters[fmt]
        if (fmt, prec) in skipped:
            res = VariantResult(fmt, prec.value, "skipped", error=skipped[(fmt, prec)])
        else:
            res, art = _run_variant(exp, src, prec, tmp, options, quiet)
            if art is not None:
                artifacts.append(art)
            else:
                failures.append({"format": fmt, "precision": prec.value, "error": res.error,
                                 "seconds": res.seconds})
        results.append(res)
        if progress is not None:
            progress(res)
    from edgekit.runtime import manifest

    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    source = _source_entry(spec, src, tmp, as_live)
    for a in artifacts:  # which model each file was made from, and when: partial re-exports keep files
        a["source_fingerprint"], a["exported"] = manifest.source_identity(source), created
    data = {
        "edgekit_version": __version__,
        "created": created,
        "source": source,
        "metadata": options.metadata,
        "options": {"opset": opset, "max_batch": max_batch,
                    "calibration": options.calibration_origin or None,
                    "inputs": None if inputs is None else str(inputs),
                    "int_range": list(irange) if irange else None, "unsafe": bool(unsafe),
                    "tflite_select_tf_ops": bool(tflite_select_tf_ops),
                    "keep_float": list(keep_float) or None},
        "preflight": predicted,
        "artifacts": artifacts,
        "failures": failures,
        "skipped": [{"format": f, "precision": p.value, "reason": r} for (f, p), r in skipped.items()],
        "seconds": {"load": round(t_loaded - t_start, 3),
                    "total": round(time.perf_counter() - t_start, 3)},
    }
    if reference is not None:
        data["reference"] = reference
    return results, data


def _preflight(src, variants, options: ExportOptions, quiet: bool) -> list[str]:
    """``edgekit check``'s predicted failures for the planned formats; a check that itself fails
    is reported as one line and never stops the export (the converters are the final word)."""
    from edgekit.export.check import preflight

    try:
        with _quiet(quiet):
            return preflight(src, [f for f, _ in variants], options)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - the check is advice; converting still decides
        return [f"check: could not run ({error_lines(exc)}); converting anyway"]


def _run_variant(exp, src, prec: Precision, tmp: Path, options: ExportOptions, quiet: bool):
    """Convert one variant; return ``(VariantResult, manifest entry or None)``."""
    t0 = time.perf_counter()
    target = tmp / exp.relpath(prec)
    try:
        with _quiet(quiet):
            produced = exp.export(src, prec, tmp, options)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # any converter error fails this variant only
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()
        secs = round(time.perf_counter() - t0, 3)
        return VariantResult(exp.name, prec.value, "failed", seconds=secs, error=error_lines(exc)), None
    secs = round(time.perf_counter() - t0, 3)
    rel = produced.path.relative_to(tmp).as_posix()
    size, digest = tree_size(produced.path), sha256_tree(produced.path)
    entry = {"format": exp.name, "precision": prec.value, "path": rel, "size_bytes": size, "sha256": digest,
             "inputs": produced.inputs, "outputs": produced.outputs, "quantization": produced.quantization,
             "converter": exp.converter, "converter_version": exp.converter_version(), "seconds": secs,
             "metadata": produced.embedded_metadata, **produced.extra}
    return VariantResult(exp.name, prec.value, "ok", seconds=secs, path=rel, size_bytes=size,
                         sha256=digest), entry


def export(model_or_path, out: str | Path | None = None, formats: list[str] | None = None,
           precisions: list[str] | None = None, calibration: str | Path | None = None, *,
           inputs: str | Path | None = None, input_shapes=None, int_range=None, unsafe: bool = False,
           opset: int = 17, max_batch: int = 1024, tflite_select_tf_ops: bool = False, quiet: bool = True,
           progress=None, clean: bool = False, keep_float=None) -> ExportReport:
    """Export a model to every chosen format and precision (the Python API: ``edgekit.export(...)``).

    Keras runs each process on one backend, fixed when it is imported. When this process runs
    Keras on JAX or torch, a ``.keras`` file (or the live model, saved to a temporary ``.keras``)
    is exported in a child Python process on the TensorFlow backend (the weights load there
    bit-identically); the report comes back the same way.

    Args:
        model_or_path: a live ``keras.Model``, a ``.keras`` file, an ``artifacts/<example>``
            directory or a SavedModel directory (str or Path).
        out: export directory (default None: ``<example>/exports``; ``<savedmodel>_exports`` or
            ``<stem>_exports`` beside a SavedModel or ``.keras`` file; ``./<model name>_exports``
            for a live model).
        formats: format names from :data:`edgekit.core.formats.FORMATS` (default None: all).
        precisions: precision names (default None: every precision each format supports).
        calibration: representative data for int8, ``.npz`` keyed by input name (default None:
            ``inputs``, else the example's ``calibration.npz``).
        inputs: golden inputs, ``.npz`` keyed by input name (default None: synthesised for a Keras
            source; see :mod:`edgekit.parity.inputs`).
        input_shapes: ``{"ids": (128,)}`` or ``["ids=128"]``: fix unknown non-batch dims of a Keras
            source (default None).
        int_range: ``(lo, hi)``: synthesise integer inputs in ``[lo, hi)`` (default None: from the
            model's Embedding layers).
        unsafe: load a ``.keras`` holding Lambda layers (``safe_mode=False``; default False).
        opset: ONNX opset (default 17).
        max_batch: Core ML flexible batch upper bound (default 1024).
        tflite_select_tf_ops: allow Flex (TensorFlow) ops in TFLite files (default False: builtins
            only; the LiteRT wheel cannot load Flex files, so verify gives them ``unverified`` rows).
        quiet: silence converter output (default True).
        progress: optional ``callable(VariantResult)`` called after each variant.
        clean: replace the previous export in ``out`` as a whole (default False: keep the variants
            this call does not convert, marked stale in the manifest when the model changed).
        keep_float: ``"auto"`` or Keras layer names the full-integer int8 TFLite variant keeps in
            float (default None: everything int8; recorded in the manifest's quantization.keep_float).

    Returns:
        An :class:`~edgekit.export.base.ExportReport` (``bool(report)``: no variant failed;
        ``report.preflight``: what ``edgekit check`` predicted before converting).

    Example::

        import edgekit
        report = edgekit.export(model, "exports/my_model", formats=["tflite", "onnx"])
        print(report.out_dir, [r.status for r in report.results])
    """
    from edgekit.export import subproc

    spec = source_mod.classify(model_or_path)
    kwargs = {"formats": formats, "precisions": precisions,
              "calibration": None if calibration is None else Path(calibration), "opset": opset,
              "inputs": None if inputs is None else Path(inputs), "input_shapes": input_shapes,
              "int_range": int_range, "unsafe": unsafe, "max_batch": max_batch,
              "tflite_select_tf_ops": tflite_select_tf_ops, "quiet": quiet, "clean": bool(clean),
              "keep_float": keep_float}
    out_path = None if out is None else Path(out)
    if subproc.needs_subprocess(spec):
        return subproc.export_in_subprocess(spec, out_path, kwargs, progress)
    return export_model(spec.model if spec.kind == "live" else spec.path, out_path, progress=progress, **kwargs)

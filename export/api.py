"""``export_model``: one SOURCE to every chosen (format, precision), with a manifest.

Order of work: every check on the user's input first (formats, precisions, SOURCE,
output location, calibration data) — a bad input raises an :class:`EdgekitError`
(exit 2) before anything is written. Then the SavedModel is loaded once and each variant
is converted into a staging directory; a variant whose converter fails is recorded and
the others still run. ``manifest.json`` is written last, and the staging directory
replaces the previous export directory in one rename (re-running replaces old exports
cleanly; an interrupted run leaves the old exports untouched).

Safe to call from tests: no global state besides the registry; converter chatter is
silenced only for the duration of the call (``quiet=True``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from edgekit.core.errors import InputError, OutputError, UsageError
from edgekit.core.fsutil import TMP_PREFIX, atomic_dir, clean_stale_tmp, sha256_tree, tree_size
from edgekit.core.text import error_lines
from edgekit.core.version import __version__
from edgekit.export import registry
from edgekit.export import source as source_mod
from edgekit.export.base import ExportOptions, ExportReport, Precision, VariantResult

OPSET_RANGE = (10, 18)  # tf2onnx 1.17 converts up to opset 18; quantize_dynamic needs >= 10
CALIBRATION_HOW = ("--calibration FILE.npz (float32 arrays keyed by input name, shape (N, ...)) "
                   "or FILE.npy for a single-input model")


def _check_out(out: Path, saved_model_dir: Path) -> None:
    """Refuse output locations that cannot be written or whose replacement would lose data."""
    out_abs, sm_abs = out.resolve(), saved_model_dir.resolve()
    if out_abs == sm_abs or sm_abs in out_abs.parents or out_abs in sm_abs.parents:
        raise OutputError("output directory overlaps the SavedModel", got=str(out),
                          expected="a directory outside the SavedModel (default: <example>/exports)")
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


def _metadata(src) -> dict:
    meta = {"edgekit_version": __version__, "name": src.name, "signature": src.signature_key,
            "source_fingerprint": src.fingerprint,
            "inputs": json.dumps(src.input_names), "outputs": json.dumps(src.output_names)}
    if src.example:
        labels = src.labels
        meta.update(example=src.name, task=str(src.task), labels=json.dumps(labels))
        out0 = src.output_names[0]
        if src.task == "binary":
            pos = repr(labels[-1]) if labels else "the positive class"
            meta["output_meaning"] = f"{out0}: probability of {pos}"
        elif src.task == "multiclass":
            meta["output_meaning"] = f"{out0}: class probabilities in the order of labels"
        elif src.task == "regression":
            meta["output_meaning"] = f"{out0}: predicted target, raw scale"
    return meta


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence converter chatter (Python prints, logging, tqdm bars, native stderr) for the block."""
    if not enabled:
        yield
        return
    import io
    import logging
    import warnings

    env_before = {k: os.environ.get(k) for k in ("TF_CPP_MIN_LOG_LEVEL", "TQDM_DISABLE")}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TQDM_DISABLE", "1")
    saved_fds = []
    sink = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        sink = open(os.devnull, "w")  # noqa: SIM115 - closed in finally
        for fd in (1, 2):
            try:
                saved_fds.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                pass
    except OSError:
        pass
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(old_level)
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for fd, saved in reversed(saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        if sink is not None:
            sink.close()


def export_model(source: Path, out: Path | None = None, formats: list[str] | None = None,
                 precisions: list[str] | None = None, calibration: Path | None = None, opset: int = 17,
                 *, max_batch: int = 1024, quiet: bool = True, progress=None) -> ExportReport:
    """Export SOURCE to every chosen format and precision and write ``manifest.json``.

    Args:
        source: an ``artifacts/<example>`` directory or any SavedModel directory.
        out: export directory (default None: ``<example>/exports``, or
            ``<savedmodel>_exports`` next to a foreign SavedModel). Replaced as a whole.
        formats: format names (default None: every registered format).
        precisions: precision names (default None: every precision each format supports;
            full-integer int8 is then skipped, with a note, when there is no calibration data).
        calibration: representative data for int8 (default None: the example's
            ``calibration.npz``).
        opset: ONNX opset (default 17; valid 10-18).
        max_batch: Core ML flexible batch upper bound (default 1024).
        quiet: silence converter output during the run (default True).
        progress: optional ``callable(VariantResult)`` called after each variant.

    Returns:
        An :class:`ExportReport`; ``report.ok`` is False if any variant failed.

    Raises:
        UsageError, InputError, OutputError: bad input, before anything is written.
    """
    t_start = time.perf_counter()
    variants = registry.plan(formats, precisions)
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise UsageError("ONNX opset out of range", got=opset,
                         expected=f"an integer {OPSET_RANGE[0]}-{OPSET_RANGE[1]}")
    if not isinstance(max_batch, int) or max_batch < 1:
        raise UsageError("max_batch must be a positive integer", got=max_batch, expected=">= 1")
    source = Path(source)
    sm_dir, _ = source_mod.resolve(source)
    out = Path(out) if out is not None else source_mod.default_out(source)
    _check_out(out, sm_dir)
    if calibration is not None and not Path(calibration).is_file():
        raise InputError("calibration file does not exist", got=str(calibration), expected=CALIBRATION_HOW)
    exporters = registry.formats()

    with _quiet(quiet):
        src = source_mod.open_source(source)
    t_loaded = time.perf_counter()
    needs = [(f, p) for f, p in variants if exporters[f].needs_calibration(p)]
    calib = source_mod.load_calibration(src, calibration) if (needs or calibration is not None) else None
    skipped: dict[tuple, str] = {}
    if needs and calib is None:
        if precisions is not None:
            raise UsageError(f"{', '.join(f'{f} {p.value}' for f, p in needs)} needs calibration data and "
                             f"{source} has no calibration.npz", expected=CALIBRATION_HOW)
        for v in needs:
            skipped[v] = f"no calibration data: pass {CALIBRATION_HOW}"
    options = ExportOptions(opset=opset, max_batch=max_batch, calibration=calib[0] if calib else None,
                            calibration_origin=calib[1] if calib else "", metadata=_metadata(src))

    results: list[VariantResult] = []
    artifacts, failures = [], []
    # leftovers of killed runs (staging dirs, a previous export parked between the two renames);
    # a live run's entries carry its pid and are spared
    clean_stale_tmp(out.parent)
    with atomic_dir(out) as tmp:
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

        manifest.save(tmp / manifest.MANIFEST_NAME, {
            "edgekit_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": {"path": str(source), "saved_model": str(sm_dir), "fingerprint": src.fingerprint,
                       "fingerprint_algorithm": "sha256_tree", "example": src.name if src.example else None,
                       "task": src.task, "labels": src.labels, "signature": src.signature_key,
                       "inputs": src.inputs, "outputs": src.outputs},
            "metadata": options.metadata,
            "options": {"opset": opset, "max_batch": max_batch,
                        "calibration": options.calibration_origin or None},
            "artifacts": artifacts,
            "failures": failures,
            "skipped": [{"format": f, "precision": p.value, "reason": r} for (f, p), r in skipped.items()],
            "seconds": {"load": round(t_loaded - t_start, 3),
                        "total": round(time.perf_counter() - t_start, 3)},
        })
    return ExportReport(source=source, out_dir=out, results=tuple(results),
                        seconds=time.perf_counter() - t_start)


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
           opset: int = 17, max_batch: int = 1024, quiet: bool = True, progress=None) -> ExportReport:
    """Export a model to every chosen format and precision (the Python API: ``edgekit.export(...)``).

    Args:
        model_or_path: an ``artifacts/<example>`` directory or a SavedModel directory (a path or str).
        out: export directory (default None: ``<example>/exports``, or ``<savedmodel>_exports``).
        formats: format names from :data:`edgekit.core.formats.FORMATS` (default None: all).
        precisions: precision names (default None: every precision each format supports).
        calibration: representative data for int8, ``.npz`` keyed by input name (default None:
            the example's ``calibration.npz``).
        opset: ONNX opset (default 17).
        max_batch: Core ML flexible batch upper bound (default 1024).
        quiet: silence converter output (default True).
        progress: optional ``callable(VariantResult)`` called after each variant.

    Returns:
        An :class:`~edgekit.export.base.ExportReport` (``bool(report)``: no variant failed).

    Example::

        import edgekit
        report = edgekit.export("artifacts/moons_h3", formats=["tflite", "onnx"])
        print(report.out_dir, [r.status for r in report.results])
    """
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise UsageError("edgekit.export needs a path", got=type(model_or_path).__name__,
                         expected="an example directory or a SavedModel directory (str or Path)")
    return export_model(Path(model_or_path), None if out is None else Path(out), formats, precisions,
                        None if calibration is None else Path(calibration), opset, max_batch=max_batch,
                        quiet=quiet, progress=progress)

"""The Python API: export, verify, load and bench, at the top of ``edgekit``.

Every function imports its heavy modules when called, so ``import edgekit`` costs
milliseconds and no TensorFlow::

    import edgekit

    exported = edgekit.export("artifacts/moons_h3", formats=["tflite", "onnx"])
    report = edgekit.verify(exported.out_dir)
    assert report, report.summary()
    with edgekit.load(exported.out_dir / "tflite" / "model_fp32.tflite") as runner:
        probabilities = runner.predict(x)["output_0"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from edgekit.export.base import ExportReport as ExportReport
    from edgekit.parity.results import VerifyReport as VerifyReport
    from edgekit.parity.results import VerifyRow as VerifyRow
    from edgekit.runtime.base import Runner

__all__ = ["check", "explain", "export", "verify", "load", "bench", "ExportReport", "VerifyReport", "VerifyRow"]

PathLike = str | os.PathLike[str]


def export(model_or_path: Any, out: PathLike | None = None, formats: Sequence[str] | None = None,
           precisions: Sequence[str] | None = None, calibration: PathLike | None = None,
           **options: Any) -> ExportReport:
    """Export a model to every chosen format and precision; see :func:`edgekit.export.api.export`.

    Args:
        model_or_path: what to export (see :func:`edgekit.export.api.export` for the accepted kinds).
        out: export directory (default None: next to the source).
        formats: formats to produce (default None: every format in :data:`edgekit.core.formats.FORMATS`).
        precisions: precisions to produce (default None: every precision each format supports).
        calibration: int8 representative data, ``.npz`` keyed by input name (default None).
        **options: ``inputs`` (golden inputs ``.npz``, default None), ``input_shapes`` (default None),
            ``int_range`` (default None), ``unsafe`` (default False), ``opset`` (default 17),
            ``max_batch`` (default 1024), ``quiet`` (default True), ``progress`` (default None),
            ``clean`` (default False: an existing export in ``out`` keeps the variants not exported here).

    Returns:
        An :class:`~edgekit.export.base.ExportReport`; ``bool(report)`` is False if a variant failed.
    """
    from edgekit.export.api import export as _export

    return _export(model_or_path, out, None if formats is None else list(formats),
                   None if precisions is None else list(precisions), calibration, **options)


def check(model: PathLike, formats: Sequence[str] | None = None, **options: Any) -> Any:
    """Predict, without converting, what each format will make of ``model``; see
    :func:`edgekit.export.check.check`.

    Args:
        model: a SavedModel directory, an ``artifacts/<example>`` directory or a ``.keras`` file.
        formats: formats to check (default None: every format).
        **options: ``opset`` (default 17), ``select_tf_ops`` (default False), ``unsafe`` (default False).

    Returns:
        A :class:`~edgekit.export.check.CheckReport`: ``bool(report)`` when every format is ``ok``,
        ``report.table()``, ``report.to_json()``, ``report.predicted_failures()``.
    """
    from edgekit.export.check import check as _check

    return _check(model, None if formats is None else list(formats), **options)


def explain(path: PathLike, formats: Sequence[str] | None = None, precisions: Sequence[str] | None = None,
            **options: Any) -> Any:
    """Where each exported variant diverges from its Keras model, layer by layer; see
    :func:`edgekit.parity.explain.explain`.

    Args:
        path: an exports dir or an example dir (its Keras model must be there: source/model.keras).
        formats: only these formats (default None: every format in the manifest).
        precisions: only these precisions (default None: all).
        **options: ``overrides`` (tolerance overrides, default None), ``unsafe`` (default False),
            ``keras`` (compare with this .keras model instead of the export's own, default None).

    Returns:
        An :class:`~edgekit.parity.explain.ExplainReport`: ``report.table()``, ``report.to_dict()``,
        ``report.variants[i].first_divergent``.
    """
    from edgekit.parity.explain import explain as _explain

    return _explain(path, None if formats is None else list(formats),
                    None if precisions is None else list(precisions), **options)


def verify(path: PathLike | Sequence[PathLike], *, formats: Sequence[str] | None = None,
           tolerance: PathLike | dict | None = None, jobs: int = 2, write: bool = False,
           inputs: PathLike | None = None, min_rows: int = 8) -> VerifyReport:
    """Run every exported file under ``path`` on its runtime and compare it with Keras.

    Args:
        path: an artifacts root, an example dir or an exports dir (or several).
        formats: only these formats (default None: all).
        tolerance: overrides of the tolerance policy: a JSON file or a dict like
            ``{"tflite/fp16": {"*": {"atol": 0.02}}}`` (default None: :mod:`edgekit.parity.tolerance`).
        jobs: files verified concurrently (default 2).
        write: also write report.json, parity.npz and report.md into the first path (default False),
            merged into the report there (:func:`edgekit.report.files.merge_reports`: rows of other
            formats are kept while their files are unchanged).
        inputs: golden inputs for this run, ``.npz`` keyed by input name; outputs computed with Keras
            (default None: each export's golden file).
        min_rows: a row that compared fewer golden rows is ``insufficient`` (default 8).

    Returns:
        A :class:`~edgekit.parity.results.VerifyReport`: typed rows, ``bool(report)`` True only
        when every row passed (and there is at least one), ``report.to_json()``.

    Raises:
        edgekit.core.errors.EdgekitError: bad input, before any runtime starts.
    """
    from edgekit.parity.tolerance import load_overrides, parse_overrides
    from edgekit.parity.verify import verify as _verify

    dirs = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    overrides = None
    if isinstance(tolerance, dict):
        overrides = parse_overrides(tolerance, "tolerance")
    elif tolerance is not None:
        overrides = load_overrides(Path(tolerance))
    report = _verify(dirs, formats=None if formats is None else list(formats), overrides=overrides, jobs=jobs,
                     inputs=None if inputs is None else Path(inputs), min_rows=min_rows)
    if write:
        from edgekit.report.files import merge_reports, write_reports

        rows, parity = merge_reports(dirs[0] / "report.json", report.rows, report.parity)
        write_reports(rows, parity, dirs[0] / "report.json", dirs[0] / "report.md", report.seconds)
    return report


def load(path: PathLike, format: str | None = None, **options: Any) -> Runner:
    """Open one exported file the way a device runs it.

    Args:
        path: a ``.tflite``, ``.onnx``, ``.mlpackage``, a TF.js directory (or its model.json), or a
            SavedModel directory (the reference runner; needs TensorFlow).
        format: force a format (default None: from the path).
        **options: runner options, e.g. ``num_threads=1`` (LiteRT), ``backend="wasm"`` (TF.js).

    Returns:
        A loaded :class:`~edgekit.runtime.base.Runner`: ``runner.predict(x)`` returns
        ``{output name: array}``; use it as a context manager or call ``close()``.
    """
    from edgekit.runtime.registry import detect_format, open_model

    fmt = format or detect_format(path)
    if fmt == "savedmodel":
        import edgekit.parity.reference  # noqa: F401  (registers the reference runners)
    return open_model(path, format=fmt, **options)


def bench(path: PathLike | Sequence[PathLike], **options: Any) -> dict:
    """Benchmark every exported variant under ``path``; see :func:`edgekit.bench.run.bench`."""
    from edgekit.bench.run import bench as _bench

    return _bench(path if isinstance(path, (str, os.PathLike)) else list(path), **options)


def __getattr__(name: str) -> Any:
    if name == "ExportReport":
        from edgekit.export.base import ExportReport

        return ExportReport
    if name in ("VerifyReport", "VerifyRow"):
        from edgekit.parity import results

        return getattr(results, name)
    raise AttributeError(f"module 'edgekit.api' has no attribute {name!r}")

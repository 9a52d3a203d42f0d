"""Parity verification: run every exported file on its runtime and compare with Keras.

For each directory given (an artifacts root holding example dirs, one example dir, or
an ``exports/`` dir) :func:`verify` finds the export manifests, checks everything up
front (manifest, ``reference.npz``, every listed file and its sha256: bad input is an
:class:`edgekit.core.errors.EdgekitError`, exit 2, before any runtime starts), then opens
one runner per file (TF.js files twice: the ``cpu`` and ``wasm`` backends), runs the
golden inputs once, compares each output with the Keras output under the tolerance
policy (:mod:`edgekit.parity.tolerance`) and computes the task metric for Keras and for the
format. A runner that raises becomes an ``error`` row and the others go on; variants the
manifest lists as failed conversions become ``error`` rows too. Discovery, golden files
(including those computed for a foreign SavedModel) and calibration ranges live in
:mod:`edgekit.parity.targets`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgekit.core.errors import EdgekitError, Unverifiable, UsageError
from edgekit.core.formats import FORMATS, TFJS_BACKENDS
from edgekit.parity.compare import compare_outputs
from edgekit.parity.metrics import TASK_METRIC, task_metrics
from edgekit.parity.results import VerifyReport
from edgekit.parity.targets import REFERENCE_NAME, Target, calibrated_rows, find_manifests, load_target
from edgekit.parity.tolerance import Overrides, tolerances_for
from edgekit.runtime import manifest as mf

__all__ = ["FORMATS", "REFERENCE_NAME", "TFJS_BACKENDS", "VerifyReport", "find_manifests", "load_target",
           "run_one", "verify"]

# Runners that must not run concurrently with one another: loading Core ML programs in two
# threads at once (coremltools' MIL frontend) failed with KeyErrors on op names in 8 of 28 rows
# here, and passed 28/28 serially. They run one at a time, beside the other formats.
SERIAL_FORMATS = ("coreml",)


def preload_coremltools_without_tf() -> bool:
    """Import coremltools with TensorFlow (and torch) hidden, for a process that only verifies.

    coremltools imports TensorFlow when it is installed, for its converters: 16 s of the first
    Core ML row here, against 5 s with it hidden; the Core ML reference evaluator (milproto
    loader) and ``MLModel`` need neither. Only for processes that will not convert models
    afterwards (coremltools then believes TF is absent): the CLI calls it, the library does
    not. Returns True if coremltools was imported this way.
    """
    import importlib.util
    import sys

    if "coremltools" in sys.modules or "tensorflow" in sys.modules:
        return False
    if importlib.util.find_spec("coremltools") is None:
        return False
    import logging

    hidden = [m for m in ("tensorflow", "torch") if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError
    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)  # "Failed to load _MLModelProxy" x8: expected off macOS
    try:
        import coremltools  # noqa: F401
        from coremltools.converters.mil.frontend.milproto import load  # noqa: F401
    except Exception:  # noqa: BLE001 - the adapter reports a broken coremltools itself
        return False
    finally:
        log.setLevel(level)
        for m in hidden:
            sys.modules.pop(m, None)
    return True


# ---------------------------------------------------------------- running
def _row(target: Target, fmt: str, precision: str, runtime: str, status: str, **extra) -> dict:
    metric = TASK_METRIC.get(target.task or "")
    row = {"example": target.example, "format": fmt, "precision": precision, "runtime": runtime,
           "status": status, "max_abs_err": None, "mean_abs_err": None, "max_rel_err": None,
           "required_atol": None, "atol": None, "rtol": None, "metric": metric,
           "metric_keras": None, "metric_format": None, "metric_drop": None, "max_metric_drop": None,
           "mse_keras": None, "mse_format": None, "size_bytes": None, "path": None, "message": "",
           "seconds": None, "outputs": [],
           "example_dir": str(target.example_dir) if target.example_dir else None}
    row.update(extra)
    return row


def judge_metric(row: dict, messages: list[str], keras_metric, format_metric, tol) -> None:
    """Record Keras' and the format's task metric on ``row``; a drop beyond the policy adds a failure."""
    drop = keras_metric.value - format_metric.value
    row.update(metric_keras=keras_metric.value, metric_format=format_metric.value, metric_drop=drop,
               mse_keras=keras_metric.mse, mse_format=format_metric.mse)
    if tol.max_metric_drop is not None and drop > tol.max_metric_drop + 1e-9:
        messages.append(f"{keras_metric.name} dropped {keras_metric.value:.4g} -> {format_metric.value:.4g} "
                        f"(drop {drop:.4g} > allowed {tol.max_metric_drop:g})")


def _first_output(target: Target, outs: dict[str, np.ndarray]) -> np.ndarray | None:
    first = next(iter(target.reference.outputs))
    return outs.get(first)


def _runner_options(fmt: str, backend: str | None) -> dict:
    from edgekit.runtime.registry import runner_class

    opts = {}
    cls_opts = runner_class(fmt).OPTIONS
    if backend:
        opts["backend"] = backend
    # tiny models: a thread pool per runner costs more than it gives, and files run concurrently
    for name in ("num_threads", "intra_op_num_threads", "inter_op_num_threads"):
        if name in cls_opts:
            opts[name] = 1
    return opts


def _map_names(want: list[str], have: list[str]) -> dict[str, str]:
    """Runtime name -> reference name; a single tensor maps by position if the names differ."""
    if set(want) <= set(have) or len(want) != 1 or len(have) != 1:
        return {h: h for h in have}
    return {have[0]: want[0]}


def run_one(target: Target, art: mf.Artifact, path: Path, backend: str | None,
            overrides: Overrides | None, keras_metric) -> tuple[dict, dict[str, np.ndarray]]:
    """Verify one (artifact, backend): returns the row and the format's outputs."""
    from edgekit.runtime.registry import open_model

    ref = target.reference
    base = {"size_bytes": int(art.size_bytes), "path": art.path, "backend": backend}
    t0 = time.perf_counter()
    runtime = f"tfjs {backend}" if backend else art.format
    try:
        tols = tolerances_for(art.format, art.precision, list(ref.outputs), overrides)
        with open_model(path, format=art.format, **_runner_options(art.format, backend)) as runner:
            runtime = runner.runtime_name
            if backend and backend not in runtime:
                runtime = f"{runtime} ({backend})"
            in_map = _map_names([i.name for i in runner.inputs], list(ref.inputs))
            feeds = {runner_name: ref.inputs[ref_name]
                     for ref_name, runner_name in in_map.items()} if in_map else ref.inputs
            raw = runner.predict(feeds)
        out_map = _map_names(list(ref.outputs), list(raw))
        got = {out_map[k]: v for k, v in raw.items()}
    except Unverifiable as exc:
        return _row(target, art.format, art.precision, runtime, "unverified", message=str(exc),
                    seconds=round(time.perf_counter() - t0, 3), **base), {}
    except EdgekitError as exc:
        return _row(target, art.format, art.precision, runtime, "error", message=str(exc),
                    seconds=round(time.perf_counter() - t0, 3), **base), {}
    except Exception as exc:  # noqa: BLE001 - one broken runtime must not stop the others
        return _row(target, art.format, art.precision, runtime, "error",
                    message=f"{type(exc).__name__}: {exc}",
                    seconds=round(time.perf_counter() - t0, 3), **base), {}
    tol = tols[""]
    rows_mask = calibrated_rows(art, target) if tol.calibrated_range_only else None
    result = compare_outputs(got, ref.outputs, tols, rows=rows_mask)
    row = _row(target, art.format, art.precision, runtime, "pass", **base,
               max_abs_err=result.max_abs_err, atol=tol.atol, rtol=tol.rtol, atol_policy=tol.atol,
               required_atol=result.required_atol, max_metric_drop=tol.max_metric_drop,
               rows_excluded=0 if rows_mask is None else int(len(rows_mask) - rows_mask.sum()),
               outputs=[o.to_dict() for o in result.outputs])
    worst = max(result.outputs, key=lambda o: o.max_abs_err or 0.0, default=None)
    if worst is not None:
        row.update(mean_abs_err=worst.mean_abs_err, max_rel_err=worst.max_rel_err, atol=worst.atol)
    messages = list(result.failures)
    first = _first_output(target, got)
    if keras_metric is not None and keras_metric.value is not None and first is not None \
            and first.shape == _first_output(target, ref.outputs).shape:
        judge_metric(row, messages, keras_metric, task_metrics(target.task, ref.y_true, first, ref.n_labeled),
                     tol)
    if messages:
        row["status"] = "fail"
        row["message"] = "; ".join(messages)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row, got


def _run_all(tasks: list, overrides: Overrides | None, jobs: int) -> list:
    """Run every task; formats in SERIAL_FORMATS go one at a time in a lane of their own."""
    results: list = [None] * len(tasks)

    def one(i):
        a = tasks[i]
        results[i] = run_one(a[1], a[2], a[3], a[4], overrides, a[5])

    def lane(idx):
        for i in idx:
            one(i)

    serial = [i for i, a in enumerate(tasks) if a[2].format in SERIAL_FORMATS]
    free = [i for i, a in enumerate(tasks) if a[2].format not in SERIAL_FORMATS]
    if jobs <= 1:
        lane(range(len(tasks)))
        return results
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(lane, serial)] if serial else []
        futures += [pool.submit(one, i) for i in free]
        for f in futures:
            f.result()
    return results


def verify(dirs: list[Path], formats: list[str] | None = None, overrides: Overrides | None = None,
           jobs: int = 2, light_coreml: bool = False) -> VerifyReport:
    """Verify every exported file under ``dirs`` against its Keras reference.

    Args:
        dirs: artifacts roots, example dirs or exports dirs.
        formats: only these formats (default None: all).
        overrides: tolerance overrides, see :func:`edgekit.parity.tolerance.lookup` (default none).
        jobs: files verified concurrently (default 2; runtimes run outside the GIL).
        light_coreml: import coremltools with TensorFlow hidden before the Core ML rows
            (default False; see :func:`preload_coremltools_without_tf`, for CLI processes).

    Returns:
        A :class:`~edgekit.parity.results.VerifyReport`; rows are ordered by example, then manifest order.

    Raises:
        EdgekitError: bad input (exit 2), found before any runtime starts.
    """
    t0 = time.perf_counter()
    if not dirs:
        raise UsageError("no directory given", expected="at least one DIR")
    bad = sorted(set(formats or []) - set(FORMATS))
    if bad:
        raise UsageError("unknown format", got=bad, expected=list(FORMATS))
    manifests = [m for d in dirs for m in find_manifests(Path(d))]
    seen: set[Path] = set()
    targets = []
    for m in manifests:
        if m.resolve() not in seen:
            seen.add(m.resolve())
            targets.append(load_target(m))
    tasks, fail_rows = [], {}
    for ti, t in enumerate(targets):
        keras_metric = None
        if t.task in TASK_METRIC and t.reference.n_labeled:
            keras_metric = task_metrics(t.task, t.reference.y_true,
                                        next(iter(t.reference.outputs.values())), t.reference.n_labeled)
        for art, path in t.artifacts:
            if formats and art.format not in formats:
                continue
            for backend in (TFJS_BACKENDS if art.format == "tfjs" else (None,)):
                tasks.append((ti, t, art, path, backend, keras_metric))
        fail_rows[ti] = [_row(t, f.get("format", "?"), f.get("precision", "?"), "-", "error",
                              message=f"conversion failed: {f.get('error', '')}")
                         for f in t.manifest.failures if not formats or f.get("format") in formats]
    if light_coreml and any(a[2].format == "coreml" for a in tasks):
        preload_coremltools_without_tf()
    done = _run_all(tasks, overrides, jobs)
    report = VerifyReport()
    for ti, t in enumerate(targets):
        for o, arr in t.reference.outputs.items():
            report.parity[f"{t.example}__keras__{o}"] = arr
        for task, (row, got) in zip(tasks, done, strict=True):
            if task[0] == ti:
                report.append(row, got)
        for row in fail_rows[ti]:
            report.append(row)
    report.seconds = time.perf_counter() - t0
    return report

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

import datetime as _dt
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
from edgekit.parity.tolerance import Overrides, Tolerance, tolerances_for
from edgekit.runtime import manifest as mf

__all__ = ["FORMATS", "REFERENCE_NAME", "TFJS_BACKENDS", "VerifyReport", "find_manifests", "load_target",
           "run_one", "verify"]

# Runners that must not run concurrently with one another: loading Core ML programs in two
# threads at once (coremltools' MIL frontend) failed with KeyErrors on op names in 8 of 28 rows
# here, and passed 28/28 serially. They run one at a time, beside the other formats.
SERIAL_FORMATS = ("coreml",)

#: a row that compared fewer golden rows than this is ``insufficient``: no verdict without data.
MIN_ROWS = 8

# The savedmodel row: the exported SavedModel against Keras, the same graph in the same TensorFlow,
# so only float32 summation-order noise is allowed (fp32 rows of every format: <= 5.1e-7 peak-
# normalised, see parity/tolerance.py). Keras 3.15.1's Resizing/CenterCrop + BatchNormalization
# export bug (keras-team/keras#23166) is 0.05-0.38 off on the fixture in tests/byom. Not in
# tolerance.POLICY, which lists exactly the deployable variants.
SAVEDMODEL_TOLERANCE = {"": Tolerance(atol=1e-5)}


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
    measured = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    row = {"example": target.example, "format": fmt, "precision": precision, "runtime": runtime,
           "status": status, "max_abs_err": None, "mean_abs_err": None, "max_rel_err": None,
           "required_atol": None, "atol": None, "rtol": None, "metric": metric,
           "metric_keras": None, "metric_format": None, "metric_drop": None, "max_metric_drop": None,
           "mse_keras": None, "mse_format": None, "size_bytes": None, "path": None, "message": "",
           "seconds": None, "outputs": [], "rows_compared": 0,
           "inputs_origin": target.reference.origin, "reference": target.reference.outputs_from,
           "example_dir": str(target.example_dir) if target.example_dir else None,
           "manifest": str(target.manifest.path), "sha256": None, "measured": measured}
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


def _feed(feeds: dict[str, np.ndarray], runner, notes: list[str]) -> dict[str, np.ndarray]:
    """Golden inputs in the dtypes the runtime takes: a cast only where every value survives it
    exactly (TF.js runs int64 and uint8 inputs as int32), said in ``notes``; otherwise as they are,
    and the runner refuses them in one line."""
    declared = {i.name: np.dtype(i.dtype) for i in runner.inputs}
    out = {}
    for name, arr in feeds.items():
        want = declared.get(name)
        if want is not None and arr.dtype != want and arr.dtype.kind in "iub" and want.kind in "iu":
            cast = arr.astype(want)
            if np.array_equal(cast, arr):
                notes.append(f"input {name!r} fed as {want.name} ({runner.runtime_name} takes {want.name} "
                             f"for {arr.dtype.name}; same values)")
                arr = cast
        out[name] = arr
    return out


def tfjs_int_notes(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> list[str]:
    """TF.js has one integer dtype, int32: say which inputs/outputs ran as int32 (compared by value)."""
    notes = [f"input {n!r} ran as int32 in TF.js (no {a.dtype.name} there; same values)"
             for n, a in inputs.items() if a.dtype.kind in "iu" and a.dtype != np.int32]
    notes += [f"output {n!r} is int32 in TF.js (no {a.dtype.name} there): compared by value"
              for n, a in outputs.items() if a.dtype.kind in "iu" and a.dtype != np.int32]
    return notes


def _dtype_notes(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], notes: list[str]) -> dict:
    """Outputs whose integer width differs from the reference's (TF.js has no int64 and returns int32)
    are compared by value; returns ``got`` with those cast to the reference dtype, and says so."""
    out = dict(got)
    for name, arr in got.items():
        exp = expected.get(name)
        if exp is not None and arr.dtype != exp.dtype and arr.dtype.kind in "iu" and exp.dtype.kind in "iu":
            notes.append(f"output {name!r} is {arr.dtype.name} here and {exp.dtype.name} in Keras: compared by value")
            out[name] = arr.astype(exp.dtype)
    return out


def run_one(target: Target, art: mf.Artifact, path: Path, backend: str | None,
            overrides: Overrides | None, keras_metric, min_rows: int = MIN_ROWS) -> tuple[dict, dict[str, np.ndarray]]:
    """Verify one (artifact, backend): returns the row and the format's outputs.

    A row that ran and compared fewer than ``min_rows`` golden rows (default 8) is ``insufficient``:
    no verdict without data.
    """
    from edgekit.runtime.registry import open_model

    ref = target.reference
    base = {"size_bytes": int(art.size_bytes), "path": art.path, "backend": backend, "sha256": art.sha256,
            **_graph_fields(art)}
    t0 = time.perf_counter()
    runtime = f"tfjs {backend}" if backend else art.format
    notes: list[str] = _graph_notes(base)
    try:
        tols = SAVEDMODEL_TOLERANCE if art.format == "savedmodel" else \
            tolerances_for(art.format, art.precision, list(ref.outputs), overrides)
        with open_model(path, format=art.format, **_runner_options(art.format, backend)) as runner:
            runtime = runner.runtime_name
            if backend and backend not in runtime:
                runtime = f"{runtime} ({backend})"
            in_map = _map_names([i.name for i in runner.inputs], list(ref.inputs))
            feeds = {runner_name: ref.inputs[ref_name]
                     for ref_name, runner_name in in_map.items()} if in_map else ref.inputs
            raw = runner.predict(_feed(feeds, runner, notes))
        if art.format == "tfjs":
            notes.extend(tfjs_int_notes(ref.inputs, ref.outputs))
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
    rows_mask = calibrated_rows(art, target) if tols[""].calibrated_range_only else None
    row = judge(target, art.format, art.precision, runtime, got, tols, base, keras_metric, min_rows, notes,
                rows_mask)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return mark_stale(row, art), got


def mark_stale(row: dict, art: mf.Artifact) -> dict:
    """A file the manifest marks stale (exported from another version of the source) gets status
    ``stale`` whatever it measured: its verdict is not about the current model."""
    raw = getattr(art, "raw", None) or {}
    if raw.get("stale"):
        why = f"stale: {raw.get('stale_reason') or 'exported from another version of the source'}"
        row["message"] = f"{why} (measured: {row['status']}); {row['message']}" if row["message"] else \
            f"{why} (measured: {row['status']})"
        row["status"] = "stale"
    return row


def _graph_fields(art: mf.Artifact) -> dict:
    """The manifest's record of the graph a variant was converted from (rewrites, re-trace), for the row."""
    raw = getattr(art, "raw", None) or {}
    out = {}
    if raw.get("rewrites"):
        out["rewrites"] = list(raw["rewrites"])
    if raw.get("graph") and raw["graph"] != "serving signature":
        out["graph"] = str(raw["graph"])
    return out


def _graph_notes(fields: dict) -> list[str]:
    """``"rewrites: erfc->1-erf"`` / ``"graph: keras re-trace ..."``: what the row's message says about it."""
    notes = []
    if fields.get("rewrites"):
        notes.append("rewrites: " + ", ".join(fields["rewrites"]))
    if fields.get("graph"):
        notes.append(f"graph: {fields['graph']}")
    return notes


def judge(target: Target, fmt: str, precision: str, runtime: str, got: dict[str, np.ndarray], tols: dict,
          base: dict, keras_metric=None, min_rows: int = MIN_ROWS, notes: list[str] | None = None,
          rows_mask: np.ndarray | None = None) -> dict:
    """The verdict on one run's outputs: compare with the reference, judge the task metric, count
    the rows compared (fewer than ``min_rows``: ``insufficient``); returns the row.

    Args:
        target: what was verified (its reference holds the Keras outputs).
        fmt, precision, runtime: the row's format, precision and runtime description.
        got: the runtime's outputs keyed by reference output name.
        tols: ``{output name or "": Tolerance}``.
        base: extra row fields (size, path, backend, ...).
        keras_metric: the Keras model's task metric, or None (default).
        min_rows: fewer rows compared makes the row ``insufficient`` (default 8).
        notes: facts for the message that are not failures (dtype casts; default none).
        rows_mask: the golden rows whose values are compared (default None: all).
    """
    ref = target.reference
    got = _dtype_notes(got, ref.outputs, notes := list(notes or []))
    tol = tols[""]
    result = compare_outputs(got, ref.outputs, tols, rows=rows_mask)
    compared = min((o.rows_compared for o in result.outputs), default=0)
    row = _row(target, fmt, precision, runtime, "pass", **base,
               max_abs_err=result.max_abs_err, atol=tol.atol, rtol=tol.rtol, atol_policy=tol.atol,
               required_atol=result.required_atol, max_metric_drop=tol.max_metric_drop,
               rows_compared=compared,
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
    elif compared < min_rows:
        row["status"] = "insufficient"
        why = f" (the other {row['rows_excluded']} lie outside the int8 input/output range)" \
            if row["rows_excluded"] else ""
        messages.append(f"compared {compared} golden row(s){why}, fewer than the {min_rows} a verdict needs "
                        "(--min-rows; more or wider golden inputs: --inputs FILE.npz)")
    row["message"] = "; ".join(messages + notes)
    return row


def _run_all(tasks: list, overrides: Overrides | None, jobs: int, min_rows: int = 8) -> list:
    """Run every task; formats in SERIAL_FORMATS go one at a time in a lane of their own."""
    results: list = [None] * len(tasks)

    def one(i):
        a = tasks[i]
        results[i] = run_one(a[1], a[2], a[3], a[4], overrides, a[5], min_rows)

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


def _savedmodel_task(t: Target, ti: int):
    """The ``savedmodel`` task of a target (a Keras source's exported SavedModel vs Keras), or a
    ready ``unverified`` row when TensorFlow is not installed here (a device)."""
    import importlib.util

    if t.saved_model is None:
        return None, None
    art, path = t.saved_model
    if importlib.util.find_spec("tensorflow") is None:
        return None, _row(t, "savedmodel", "fp32", "-", "unverified", path=art.path,
                          message="running the exported SavedModel needs TensorFlow (pip install 'edgekit[export]'); "
                                  "the other rows are compared with Keras' outputs in the golden file")
    import edgekit.parity.reference  # noqa: F401  (registers the savedmodel runner)

    return (ti, t, art, path, None, None), None


def _mark_converted(rows: list[dict], sm_row: dict) -> None:
    """A SavedModel that differs from Keras taints every file converted from it: say so on each
    row, and a row that passed (within a loose tolerance) fails."""
    if sm_row["status"] != "fail":
        return
    why = (f"converted from a SavedModel that already differs from Keras (savedmodel row: max abs err "
           f"{sm_row['max_abs_err']:.3g}): Keras' own export is at fault, not this converter")
    for row in rows:
        if row["format"] == "savedmodel":
            continue
        if row["status"] in ("pass", "insufficient"):
            row["status"] = "fail"
        row["message"] = f"{why}; {row['message']}" if row["message"] else why


def verify(dirs: list[Path], formats: list[str] | None = None, overrides: Overrides | None = None,
           jobs: int = 2, light_coreml: bool = False, *, inputs: Path | None = None,
           int_range: tuple[int, int] | None = None, min_rows: int = MIN_ROWS, unsafe: bool = False) -> VerifyReport:
    """Verify every exported file under ``dirs`` against its Keras reference.

    Args:
        dirs: artifacts roots, example dirs or exports dirs.
        formats: only these formats (default None: all, and the ``savedmodel`` row of a Keras source).
        overrides: tolerance overrides, see :func:`edgekit.parity.tolerance.lookup` (default none).
        jobs: files verified concurrently (default 2; runtimes run outside the GIL).
        light_coreml: import coremltools with TensorFlow hidden before the Core ML rows
            (default False; see :func:`preload_coremltools_without_tf`, for CLI processes).
        inputs: golden inputs for this run, ``.npz`` keyed by input name (default None: each
            export's golden file); outputs computed with Keras when the model is there.
        int_range: synthesise integer inputs in ``[lo, hi)`` for this run (default None).
        min_rows: fewer golden rows compared than this makes a row ``insufficient`` (default 8).
        unsafe: load ``.keras`` files holding Lambda layers when outputs must be computed (default False).

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
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise UsageError("--min-rows must be a positive integer", got=min_rows, expected=">= 1")
    manifests = [m for d in dirs for m in find_manifests(Path(d))]
    seen: set[Path] = set()
    targets = []
    for m in manifests:
        if m.resolve() not in seen:
            seen.add(m.resolve())
            targets.append(load_target(m, inputs=inputs, int_range=int_range, unsafe=unsafe))
    tasks, fail_rows, ready = [], {}, {}
    for ti, t in enumerate(targets):
        keras_metric = None
        if t.task in TASK_METRIC and t.reference.n_labeled:
            keras_metric = task_metrics(t.task, t.reference.y_true,
                                        next(iter(t.reference.outputs.values())), t.reference.n_labeled)
        ready[ti] = []
        if not formats:
            task, row = _savedmodel_task(t, ti)
            if task is not None:
                tasks.append(task)
            if row is not None:
                ready[ti].append(row)
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
    if any(a[2].format == "savedmodel" for a in tasks):
        from edgekit.parity.reference import import_tensorflow_quietly

        import_tensorflow_quietly()
    done = _run_all(tasks, overrides, jobs, min_rows)
    from edgekit.parity.explain import annotate_failures  # failed rows say where they diverge (issue 13)

    annotate_failures(tasks, done, overrides)
    report = VerifyReport()
    for ti, t in enumerate(targets):
        for o, arr in t.reference.outputs.items():
            report.parity[f"{t.example}__keras__{o}"] = arr
        mine = [(row, {}) for row in ready[ti]]
        mine += [(row, got) for task, (row, got) in zip(tasks, done, strict=True) if task[0] == ti]
        mine += [(row, {}) for row in fail_rows[ti]]
        sm_row = next((r for r, _ in mine if r["format"] == "savedmodel"), None)
        if sm_row is not None:
            _mark_converted([r for r, _ in mine], sm_row)
        for row, got in mine:
            report.append(row, got)
    report.seconds = time.perf_counter() - t0
    return report

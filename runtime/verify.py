"""Parity verification: run every exported file on its runtime and compare with Keras.

For each directory given (an artifacts root holding example dirs, one example dir, or
an ``exports/`` dir) :func:`verify` finds the export manifests, checks everything up
front (manifest, ``reference.npz``, every listed file and its sha256: bad input is an
:class:`edgekit.errors.EdgekitError`, exit 2, before any runtime starts), then opens
one runner per file (TF.js files twice: the ``cpu`` and ``wasm`` backends), runs the
golden inputs once, compares each output with the Keras output under the tolerance
policy (:mod:`runtime.tolerance`) and computes the task metric for Keras and for the
format. A runner that raises becomes an ``error`` row and the others go on; variants the
manifest lists as failed conversions become ``error`` rows too.

A foreign SavedModel (an exports dir whose parent holds no ``example.json``/
``reference.npz``) gets seeded golden inputs whose SavedModel outputs (TensorFlow,
imported lazily by the ``savedmodel`` adapter) are computed once and saved atomically as
``reference.npz`` next to the manifest.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, InputError, UsageError
from edgekit.fsutil import atomic_file
from runtime import manifest as mf
from runtime.compare import compare_outputs
from runtime.metrics import TASK_METRIC, task_metrics
from runtime.tolerance import Overrides, tolerances_for

FORMATS = ("tflite", "coreml", "tfjs", "onnx")
TFJS_BACKENDS = ("cpu", "wasm")
REFERENCE_NAME = "reference.npz"
# Runners that must not run concurrently with one another: loading Core ML programs in two
# threads at once (coremltools' MIL frontend) failed with KeyErrors on op names in 8 of 28 rows
# here, and passed 28/28 serially. They run one at a time, beside the other formats.
SERIAL_FORMATS = ("coreml",)
FOREIGN_ROWS = 64
FOREIGN_SEED = 0


@dataclass
class Reference:
    """Golden inputs, Keras outputs and ground truth of one example."""

    path: Path
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    y_true: np.ndarray | None = None
    n_labeled: int = 0


@dataclass
class Target:
    """One manifest to verify, with its reference."""

    example: str
    manifest: mf.Manifest
    reference: Reference
    task: str | None = None
    example_dir: Path | None = None
    artifacts: list = field(default_factory=list)   # [(Artifact, full path)]
    calibration: dict = field(default_factory=dict)  # calibration file -> arrays (loaded once)


@dataclass
class VerifyResult:
    """Rows (report.json's list) plus the arrays needed for the parity plots."""

    rows: list[dict]
    parity: dict[str, np.ndarray]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(r["status"] == "pass" for r in self.rows)


# ---------------------------------------------------------------- discovery
def find_manifests(path: Path) -> list[Path]:
    """Export manifests under ``path`` (an artifacts root, an example dir or an exports dir).

    Raises:
        InputError: ``path`` does not exist or holds no manifest.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError("directory not found", got=str(path),
                         expected="an artifacts dir, an example dir or an exports dir")
    for cand in (path / mf.MANIFEST_NAME, path / "exports" / mf.MANIFEST_NAME):
        if cand.is_file():
            return [cand]
    found = []
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for cand in (child / "exports" / mf.MANIFEST_NAME, child / mf.MANIFEST_NAME):
            if cand.is_file():
                found.append(cand)
                break
    if not found:
        raise InputError("no export manifest found", got=str(path),
                         expected="exports/manifest.json under it (run edgekit export first)")
    return found


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputError("cannot read reference file", got=f"{path}: {exc}",
                         expected="an .npz written by edgekit train") from exc


def _check_arrays(kind: str, arrays: dict[str, np.ndarray], infos: list[dict], path: Path) -> None:
    names = [i["name"] for i in infos]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InputError(f"reference.npz does not match the manifest: missing {kind} {missing}",
                         got=f"{path.name} keys {sorted(arrays)}", expected=names)
    for info in infos:
        a = arrays[info["name"]]
        shape = list(info.get("shape") or [])
        ok = a.ndim == len(shape) and all(e is None or e == g for g, e in zip(a.shape, shape, strict=True))
        if not ok:
            raise InputError(f"reference.npz does not match the manifest: {kind} {info['name']!r} shape",
                             got=list(a.shape), expected=shape)


def load_target(manifest_path: Path) -> Target:
    """Load a manifest and its reference; check both and every listed file up front.

    Raises:
        InputError / IntegrityError: missing or mismatched reference, missing file, bad sha256.
    """
    man = mf.load(manifest_path)
    src = man.source
    parent = man.root.parent
    info: dict = {}
    example_json = parent / "example.json"
    contract = example_json.is_file() or (parent / REFERENCE_NAME).is_file()
    if example_json.is_file():
        try:
            info = json.loads(example_json.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError("example.json is not valid JSON", got=f"{example_json}: {exc}") from exc
    in_infos = src.get("inputs") or info.get("inputs") or []
    out_infos = src.get("outputs") or info.get("outputs") or []
    if contract:
        ref_path = parent / REFERENCE_NAME
        if not ref_path.is_file():
            raise InputError("reference.npz is missing", got=str(ref_path),
                             expected="the golden file edgekit train writes (re-run edgekit train)")
    else:
        ref_path = man.root / REFERENCE_NAME
        if not ref_path.is_file():
            make_foreign_reference(man, ref_path, in_infos)
    arrays = _load_npz(ref_path)
    _check_arrays("input", arrays, in_infos, ref_path)
    _check_arrays("output", arrays, out_infos, ref_path)
    inputs = {i["name"]: arrays[i["name"]] for i in in_infos}
    outputs = {o["name"]: arrays[o["name"]] for o in out_infos}
    rows = {len(a) for a in list(inputs.values()) + list(outputs.values())}
    if len(rows) != 1:
        raise InputError("reference.npz arrays have different row counts", got=sorted(rows),
                         expected="one row count for every input and output")
    refinfo = info.get("reference") or {}
    n_labeled = int(refinfo.get("n_labeled", 0)) if contract else 0
    y_true = arrays.get(refinfo.get("target_key", "y_true")) if n_labeled else None
    if n_labeled and (y_true is None or len(y_true) < n_labeled or n_labeled > rows.pop()):
        raise InputError("reference.npz does not hold n_labeled ground-truth rows",
                         got=None if y_true is None else len(y_true), expected=n_labeled)
    task = info.get("task") or src.get("task")
    name = info.get("name") or src.get("example") or (parent.name if contract else man.root.name)
    ref = Reference(ref_path, inputs, outputs, y_true, n_labeled)
    target = Target(str(name), man, ref, task, parent if contract else None)
    for art in man.artifacts:
        target.artifacts.append((art, art.verify(man.root)))
    return target


def make_foreign_reference(man: mf.Manifest, out: Path, in_infos: list[dict]) -> None:
    """Compute golden outputs for a foreign SavedModel with seeded inputs; save them atomically.

    Raises:
        InputError: the manifest's source is not an existing SavedModel directory.
    """
    cands: list[Path] = []
    for src in (man.source.get("saved_model"), man.source.get("path")):
        if src:
            p = Path(src)
            cands += [p] if p.is_absolute() else [man.root / p, man.root.parent / p, p]
    if man.root.name.endswith("_exports"):       # export's default <savedmodel>_exports
        cands.append(man.root.parent / man.root.name[: -len("_exports")])
    src = man.source.get("saved_model") or man.source.get("path")
    sm = next((c for c in cands if (c / "saved_model.pb").is_file()), None)
    if sm is None:
        raise InputError("reference.npz is missing and the source SavedModel is not found",
                         got=f"{man.root / REFERENCE_NAME}; source {src!r}",
                         expected="reference.npz next to the manifest, or the SavedModel at its source path")
    if not in_infos:
        raise InputError("manifest source lists no inputs", got=str(man.path), expected="source.inputs")
    from runtime.registry import open_model

    rng = np.random.default_rng(FOREIGN_SEED)
    feeds = {}
    for i in in_infos:
        shape = [FOREIGN_ROWS] + [1 if d is None else int(d) for d in list(i["shape"])[1:]]
        feeds[i["name"]] = rng.standard_normal(shape).astype(i.get("dtype", "float32"))
    with open_model(sm, format="savedmodel") as runner:
        outputs = runner.predict(feeds)
    with atomic_file(out, "wb") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **feeds, **outputs)


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


def _first_output(target: Target, outs: dict[str, np.ndarray]) -> np.ndarray | None:
    first = next(iter(target.reference.outputs))
    return outs.get(first)


def _runner_options(fmt: str, backend: str | None) -> dict:
    from runtime.registry import runner_class

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


def calibrated_rows(art: mf.Artifact, target: Target) -> np.ndarray | None:
    """Golden rows inside the range a full-integer model was calibrated for.

    A row is kept if every input feature lies within ``[min, max]`` of the calibration data
    (the manifest's ``quantization.calibration.source``, else the example's
    ``calibration.npz``) and inside the int8 input range, and every Keras output lies inside
    the int8 output range, ``[(qmin - zp) * scale, (qmax - zp) * scale]`` widened by one step
    (rounding at the edge is not saturation). Outside, int8 activations saturate by design.
    Returns None when neither calibration data nor quantization parameters are known.
    """
    ref = target.reference
    q = art.raw.get("quantization") or {}
    masks = []
    calib = _calibration(art, target)
    for name, c in (calib or {}).items():
        if name in ref.inputs and len(c):
            a = ref.inputs[name].reshape(len(ref.inputs[name]), -1)
            c = c.reshape(len(c), -1)
            masks.append(((a >= c.min(axis=0)) & (a <= c.max(axis=0))).all(axis=1))
    for kind, arrays in (("inputs", ref.inputs), ("outputs", ref.outputs)):
        for name, p in (q.get(kind) or {}).items():
            if name not in arrays or not p.get("scale"):
                continue
            info = np.iinfo(np.dtype(p.get("dtype", "int8")))
            zp, step = p.get("zero_point", 0), float(p["scale"])
            lo, hi = (info.min - zp - 1) * step, (info.max - zp + 1) * step
            a = arrays[name].reshape(len(arrays[name]), -1)
            masks.append(((a >= lo) & (a <= hi)).all(axis=1))
    if not masks:
        return None
    return np.logical_and.reduce(masks)


def _calibration(art: mf.Artifact, target: Target) -> dict[str, np.ndarray] | None:
    q = art.raw.get("quantization") or {}
    cands = []
    src = (q.get("calibration") or {}).get("source") if isinstance(q.get("calibration"), dict) else None
    if src:
        cands.append(Path(src))
    if target.example_dir is not None:
        cands.append(target.example_dir / "calibration.npz")
    for c in cands:
        if c.suffix == ".npz" and c.is_file():
            if c not in target.calibration:
                try:
                    target.calibration[c] = _load_npz(c)
                except InputError:
                    target.calibration[c] = {}
            return target.calibration[c]
    return None


def run_one(target: Target, art: mf.Artifact, path: Path, backend: str | None,
            overrides: Overrides | None, keras_metric) -> tuple[dict, dict[str, np.ndarray]]:
    """Verify one (artifact, backend): returns the row and the format's outputs."""
    from runtime.registry import open_model

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
        fm = task_metrics(target.task, ref.y_true, first, ref.n_labeled)
        drop = keras_metric.value - fm.value
        row.update(metric_keras=keras_metric.value, metric_format=fm.value, metric_drop=drop,
                   mse_keras=keras_metric.mse, mse_format=fm.mse)
        if tol.max_metric_drop is not None and drop > tol.max_metric_drop + 1e-9:
            messages.append(f"{keras_metric.name} dropped {keras_metric.value:.4g} -> {fm.value:.4g} "
                            f"(drop {drop:.4g} > allowed {tol.max_metric_drop:g})")
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
           jobs: int = 2, light_coreml: bool = False) -> VerifyResult:
    """Verify every exported file under ``dirs`` against its Keras reference.

    Args:
        dirs: artifacts roots, example dirs or exports dirs.
        formats: only these formats (default None: all).
        overrides: tolerance overrides, see :func:`runtime.tolerance.lookup` (default none).
        jobs: files verified concurrently (default 2; runtimes run outside the GIL).
        light_coreml: import coremltools with TensorFlow hidden before the Core ML rows
            (default False; see :func:`preload_coremltools_without_tf`, for CLI processes).

    Returns:
        A :class:`VerifyResult`; rows are ordered by example, then manifest order.

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
    rows: list[dict] = []
    parity: dict[str, np.ndarray] = {}
    for ti, t in enumerate(targets):
        for o, arr in t.reference.outputs.items():
            parity[f"{t.example}__keras__{o}"] = arr
        for task, (row, got) in zip(tasks, done, strict=True):
            if task[0] == ti:
                row["id"] = len(rows)
                for o, arr in got.items():
                    parity[f"row{row['id']}__{o}"] = np.asarray(arr)
                rows.append(row)
        for row in fail_rows[ti]:
            row["id"] = len(rows)
            rows.append(row)
    return VerifyResult(rows, parity, time.perf_counter() - t0)

"""What ``edgekit verify`` checks against: export manifests, their golden files, int8 row selection.

:func:`find_manifests` accepts an artifacts root, an example dir or an exports dir;
:func:`load_target` reads a manifest and its golden file and checks both, and every listed
file's sha256, before any runtime starts (bad input raises an
:class:`edgekit.core.errors.EdgekitError`, exit 2). Where the golden outputs come from:

- an edgekit example: ``<example>/reference.npz``, Keras' predictions at training time on real
  data (test inputs and seeded rows over the input range);
- a ``.keras`` file or a live model: ``<exports>/reference.npz`` written by the export, Keras'
  ``model.predict`` on the golden inputs (``--inputs`` or synthesised, see
  :mod:`edgekit.parity.inputs`); the exported SavedModel becomes a ``savedmodel`` row of its own;
- a bare SavedModel (no Keras model): seeded inputs synthesised for its dtypes, run through the
  SavedModel (TensorFlow, imported lazily by the ``savedmodel`` adapter) once and saved
  atomically as ``reference.npz`` next to the manifest.

``verify --inputs FILE.npz`` (or ``--int-range``) replaces the golden inputs for this run; their
outputs are computed with Keras when the model is available, else with the SavedModel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.core.errors import InputError, IntegrityError
from edgekit.core.fsutil import atomic_file, sha256_file, tree_size
from edgekit.runtime import manifest as mf
from edgekit.runtime.discover import find_manifests  # noqa: F401  (re-exported: verify, web, cli)

REFERENCE_NAME = "reference.npz"
FOREIGN_ROWS = 64
FOREIGN_SEED = 0
EXAMPLE_ORIGIN = "reference.npz of edgekit train: the example's test inputs and seeded rows over the input range"


@dataclass
class Reference:
    """Golden inputs, reference outputs and ground truth of one target.

    Attributes:
        path: the golden file (or the ``--inputs`` file).
        inputs, outputs: arrays keyed by input/output name.
        y_true, n_labeled: ground truth of the first ``n_labeled`` rows (examples only).
        origin: ``{input name: where its golden rows come from}`` (``inputs_origin`` of the rows).
        outputs_from: what computed ``outputs`` (``"keras ..."`` or ``"savedmodel ..."``).
    """

    path: Path
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    y_true: np.ndarray | None = None
    n_labeled: int = 0
    origin: dict[str, str] = field(default_factory=dict)
    outputs_from: str = "keras"

    @property
    def rows(self) -> int:
        return int(len(next(iter(self.inputs.values())))) if self.inputs else 0

    @property
    def from_keras(self) -> bool:
        return self.outputs_from.startswith("keras")


@dataclass
class Target:
    """One manifest to verify, with its reference.

    Attributes:
        saved_model: the exported SavedModel of a Keras source, as a pseudo artifact, and its
            path (the ``savedmodel`` row), or None.
        keras_path: the Keras model behind the export, or None.
    """

    example: str
    manifest: mf.Manifest
    reference: Reference
    task: str | None = None
    example_dir: Path | None = None
    artifacts: list = field(default_factory=list)   # [(Artifact, full path)]
    saved_model: tuple | None = None
    keras_path: Path | None = None


# ---------------------------------------------------------------- discovery
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


def _source_path(man: mf.Manifest, key: str) -> Path | None:
    rel = man.source.get(key)
    if not rel:
        return None
    p = Path(rel)
    if p.is_absolute():
        return p
    inside = mf.confined(man.root, rel)
    # manifests before 0.2 recorded a path outside the export relative to where export ran: not
    # resolvable here, so the caller falls back to the example's model.keras beside exports/
    return inside if inside.exists() else None


def load_target(manifest_path: Path, inputs: Path | None = None, int_range: tuple[int, int] | None = None,
                unsafe: bool = False) -> Target:
    """Load a manifest and its reference; check both and every listed file up front.

    Args:
        manifest_path: the manifest.
        inputs: golden inputs for this run (``--inputs``), replacing the stored ones (default None).
        int_range: synthesise integer inputs in ``[lo, hi)`` for this run (default None).
        unsafe: load a ``.keras`` holding Lambda layers to compute outputs (default False).

    Raises:
        InputError / IntegrityError: missing or mismatched reference, missing file, bad sha256,
            an ``--inputs`` file that does not fit the model.
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
    stored = man.data.get("reference") or {}
    keras_path = _source_path(man, "keras") if src.get("keras") else None
    if keras_path is None and contract and (parent / "model.keras").is_file():
        keras_path = parent / "model.keras"
    task = info.get("task") or src.get("task")
    name = info.get("name") or src.get("example") or (parent.name if contract else man.root.name)
    if inputs is not None or int_range is not None or (stored and not stored.get("path")):
        if inputs is None and int_range is None:
            raise InputError(f"{name}: the export has no golden file: {stored.get('error')}",
                             got=str(man.path), expected="edgekit verify --inputs FILE.npz or --int-range LO,HI")
        ref = fresh_reference(man, in_infos, out_infos, keras_path, inputs, int_range, unsafe)
    else:
        ref = _stored_reference(man, info, contract, stored, in_infos, out_infos)
    target = Target(str(name), man, ref, task, parent if contract else None, keras_path=keras_path)
    for art in man.artifacts:
        target.artifacts.append((art, art.verify(man.root)))
    sm = _source_path(man, "saved_model") if src.get("kind") in ("keras", "live") else None
    if sm is not None and ref.from_keras:
        pseudo = mf.Artifact("savedmodel", "fp32", str(src["saved_model"]), tree_size(sm) if sm.exists() else 0,
                             str(src.get("fingerprint", "")), in_infos, out_infos, raw={})
        target.saved_model = (pseudo, pseudo.verify(man.root))
    return target


def _stored_reference(man: mf.Manifest, info: dict, contract: bool, stored: dict, in_infos: list,
                      out_infos: list) -> Reference:
    parent = man.root.parent
    origin: dict[str, str] = {}
    outputs_from = "keras (edgekit train)"
    if contract:
        ref_path = parent / REFERENCE_NAME
        if not ref_path.is_file():
            raise InputError("reference.npz is missing", got=str(ref_path),
                             expected="the golden file edgekit train writes (re-run edgekit train)")
        origin = {i["name"]: EXAMPLE_ORIGIN for i in in_infos}
    elif stored.get("path"):
        ref_path = mf.confined(man.root, str(stored["path"]))
        if not ref_path.is_file():
            raise InputError("the export's golden file is missing", got=str(ref_path), expected="re-run edgekit export")
        digest = sha256_file(ref_path)
        if stored.get("sha256") and digest != stored["sha256"]:
            raise IntegrityError(f"checksum mismatch for {stored['path']}: corrupted or tampered with",
                                 got=digest[:16] + "...", expected=str(stored["sha256"])[:16] + "...")
        origin = dict(stored.get("inputs_origin") or {})
        outputs_from = str(stored.get("outputs_from") or "keras")
    else:
        ref_path = man.root / REFERENCE_NAME
        if not ref_path.is_file():
            make_foreign_reference(man, ref_path, in_infos)
        origin = {i["name"]: "seeded rows synthesised for its dtype by verify's first run" for i in in_infos}
        outputs_from = "savedmodel (no Keras model)"
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
    return Reference(ref_path, inputs, outputs, y_true, n_labeled, origin, outputs_from)


def fresh_reference(man: mf.Manifest, in_infos: list, out_infos: list, keras_path: Path | None,
                    inputs: Path | None, int_range: tuple[int, int] | None, unsafe: bool = False) -> Reference:
    """Golden inputs for this run (``--inputs`` or synthesised with ``--int-range``) and their
    outputs from Keras when the model is there, else from the SavedModel (nothing is saved).

    Raises:
        InputError: the inputs do not fit the model; neither Keras model nor SavedModel found.
    """
    from edgekit.parity import inputs as golden
    from edgekit.parity.reference import import_tensorflow_quietly  # also registers the reference runners
    from edgekit.runtime.registry import open_model

    import_tensorflow_quietly()

    int_ranges: dict = {}
    model_runner = None
    if keras_path is not None:
        model_runner = open_model(keras_path, format="keras", unsafe=unsafe)
        int_ranges = model_runner.integer_ranges()
    try:
        if inputs is not None:
            feeds = golden.load_inputs(Path(inputs), in_infos)
            origin = {n: f"file {inputs}" for n in feeds}
        else:
            feeds, origin = golden.synthesise(in_infos, int_ranges=int_ranges, int_range=int_range)
        if model_runner is not None:
            outputs = dict(model_runner.predict(feeds))
            outputs_from = model_runner.runtime_name
        else:
            sm = _find_saved_model(man)
            with open_model(sm, format="savedmodel") as runner:
                outputs = dict(runner.predict(feeds))
                outputs_from = "savedmodel (no Keras model)"
    finally:
        if model_runner is not None:
            model_runner.close()
    names = [o["name"] for o in out_infos]
    if sorted(outputs) != sorted(names):
        raise InputError("the reference model's outputs do not match the manifest", got=sorted(outputs),
                         expected=names)
    return Reference(Path(inputs) if inputs is not None else man.root / "(synthesised)", feeds,
                     {n: outputs[n] for n in names}, None, 0, origin, outputs_from)


def _find_saved_model(man: mf.Manifest) -> Path:
    """The SavedModel an export was converted from (its recorded path, or ``<name>`` beside ``<name>_exports``).

    Raises:
        InputError: not found.
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
    return sm


def make_foreign_reference(man: mf.Manifest, out: Path, in_infos: list[dict]) -> None:
    """Compute golden outputs for a foreign SavedModel with seeded inputs synthesised for its
    dtypes (:func:`edgekit.parity.inputs.synthesise`); save them atomically.

    Raises:
        InputError: the manifest's source is not an existing SavedModel directory; an integer
            input whose range is unknown (pass ``--int-range`` or ``--inputs``).
    """
    sm = _find_saved_model(man)
    if not in_infos:
        raise InputError("manifest source lists no inputs", got=str(man.path), expected="source.inputs")
    import edgekit.parity.reference  # noqa: F401  (registers the savedmodel runner)
    from edgekit.parity.inputs import synthesise
    from edgekit.runtime.registry import open_model

    feeds, _ = synthesise(in_infos, rows=FOREIGN_ROWS, seed=FOREIGN_SEED)
    with open_model(sm, format="savedmodel") as runner:
        outputs = runner.predict(feeds)
    with atomic_file(out, "wb") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **feeds, **outputs)


def calibrated_rows(art: mf.Artifact, target: Target) -> np.ndarray | None:
    """Golden rows inside the range a full-integer model's int8 tensors can represent.

    The range is the one the int8 quantisation actually sees, per tensor, from the model's own
    scale and zero point: a row is kept if every value of every quantised input lies within
    ``[(qmin - zp) * scale, (qmax - zp) * scale]`` widened by one step (rounding at the edge is
    not saturation), and every Keras output within the int8 output range. Outside, the int8
    input or output saturates by design. (Per-feature calibration min/max is not used: with more
    than a few dozen input features almost no row has every feature inside its own calibration
    range, and the rows compared dropped to none.) Integer and bool inputs are not quantised and
    select nothing. Returns None when the artifact has no quantisation parameters.
    """
    ref = target.reference
    q = art.raw.get("quantization") or {}
    masks = []
    for kind, arrays in (("inputs", ref.inputs), ("outputs", ref.outputs)):
        for name, p in (q.get(kind) or {}).items():
            if name not in arrays or not p.get("scale") or arrays[name].dtype.kind != "f":
                continue
            info = np.iinfo(np.dtype(p.get("dtype", "int8")))
            zp, step = p.get("zero_point", 0), float(p["scale"])
            lo, hi = (info.min - zp - 1) * step, (info.max - zp + 1) * step
            a = arrays[name].reshape(len(arrays[name]), -1)
            masks.append(((a >= lo) & (a <= hi)).all(axis=1))
    if not masks:
        return None
    return np.logical_and.reduce(masks)

"""What ``edgekit verify`` checks against: export manifests, their golden files, calibration data.

:func:`find_manifests` accepts an artifacts root, an example dir or an exports dir;
:func:`load_target` reads a manifest and its ``reference.npz`` and checks both, and every
listed file's sha256, before any runtime starts (bad input raises an
:class:`edgekit.core.errors.EdgekitError`, exit 2). A foreign SavedModel (an exports dir whose
parent holds no ``example.json``/``reference.npz``) gets seeded golden inputs whose
SavedModel outputs (TensorFlow, imported lazily by the ``savedmodel`` adapter) are computed
once and saved atomically as ``reference.npz`` next to the manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.core.errors import InputError
from edgekit.core.fsutil import atomic_file
from edgekit.runtime import manifest as mf

REFERENCE_NAME = "reference.npz"
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
    import edgekit.parity.reference  # noqa: F401  (registers the savedmodel runner)
    from edgekit.runtime.registry import open_model

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

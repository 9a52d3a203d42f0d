"""What an export records about its source in the manifest: ``metadata`` (embedded in every
file) and ``source`` (kind, paths, fingerprints, signature; the model digest a partial re-export
compares, see :func:`edgekit.runtime.manifest.source_identity`)."""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.core.fsutil import sha256_file
from edgekit.core.version import __version__


def metadata(src) -> dict:
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


def source_entry(spec, src, tmp: Path, as_live: str | None) -> dict:
    """The manifest's ``source``: kind, paths (relative to the manifest when inside the export),
    fingerprints, the signature and what ``--input-shape`` fixed."""

    def rel(p):
        if p is None:
            return None
        p = Path(p)
        try:
            return p.relative_to(tmp).as_posix()
        except ValueError:  # outside the export (an example's model.keras): absolute, not relative
            return str(p.resolve())  # to wherever export happened to run

    keras = src.keras_path
    model = getattr(src, "keras_model", None)
    return {"kind": "live" if as_live else src.kind, "path": as_live or spec.display,
            "model_sha256": model_digest(model) if model is not None else None,
            "saved_model": rel(src.saved_model_dir), "fingerprint": src.fingerprint,
            "fingerprint_algorithm": "sha256_tree",
            "keras": rel(keras), "keras_sha256": sha256_file(keras) if keras is not None else None,
            "keras_note": src.keras_note, "source_sha256": src.source_fingerprint,
            "input_shapes": src.fixed_shapes or None,
            "example": src.name if src.example else None,
            "task": src.task, "labels": src.labels, "signature": src.signature_key,
            "inputs": src.inputs, "outputs": src.outputs}


def model_digest(model) -> str | None:
    """sha256 over a Keras model's config and weights: the same model gives the same digest, while
    its SavedModel re-export (and a fresh ``model.save``) differ byte-wise from run to run."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    try:
        h.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    except Exception:  # noqa: BLE001 - a subclassed model without get_config: the weights decide
        h.update(type(model).__qualname__.encode())
    try:
        for w in model.weights:
            a = np.ascontiguousarray(np.asarray(w))
            h.update(f"{w.path}:{a.dtype}:{a.shape}".encode())
            h.update(a.tobytes())
    except Exception:  # noqa: BLE001 - no digest: the SavedModel fingerprint identifies the source
        return None
    return h.hexdigest()

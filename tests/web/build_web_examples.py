"""Build tiny example directories with TF.js exports, per the artifact contract.

Used by the browser tests until the lead's ``quick_example`` and the export helper's
``export.api.export_model`` are both available. Models are untrained (seeded random
weights): parity does not need a trained model, and building takes seconds.

Run by hand: ``python tests/web/build_web_examples.py OUT_DIR`` (writes and_gate,
moons_h3 and regression_linear).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

# name -> (task, metric, labels, features, outputs, hidden)
SPECS = {
    "and_gate": ("binary", "accuracy", [0, 1], 2, 1, 4),
    "moons_h3": ("multiclass", "accuracy", [0, 1], 2, 2, 3),
    "regression_linear": ("regression", "r2", None, 10, 1, 8),
}


def _golden(name: str, features: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if name.endswith("gate"):
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        return x, (x[:, :1] * x[:, 1:]).astype(np.float32)
    if name.startswith("moons"):
        x = rng.normal(0.5, 0.8, size=(40, 2)).astype(np.float32)
        return x, (x[:, 1:] < 0.25).astype(np.float32)
    x = rng.uniform(-3, 3, size=(32, features)).astype(np.float32)
    return x, (x @ np.arange(1, features + 1, dtype=np.float32)[:, None] + 2.0)


def _tensor(name: str, width: int) -> dict:
    return {"name": name, "shape": [None, width], "dtype": "float32"}


def build(out: Path, names: list[str] | None = None, seed: int = 0) -> Path:
    """Write ``out/<name>/`` for each name (default: all of :data:`SPECS`); return ``out``."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # tensorflow_decision_forests (imported by tensorflowjs) imports IPython when stdout is
    # not a terminal (pytest's capture) unless its welcome message is disabled.
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    import keras
    import tensorflowjs as tfjs

    from edgekit.fsutil import sha256_tree, tree_size
    from runtime import manifest

    out = Path(out)
    for name in names or list(SPECS):
        task, metric, labels, feats, k, hidden = SPECS[name]
        keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(seed)
        act = "softmax" if task == "multiclass" else ("sigmoid" if task == "binary" else None)
        model = keras.Sequential([keras.Input((feats,), name="features"),
                                  keras.layers.Dense(hidden, activation="relu"),
                                  keras.layers.Dense(k, activation=act)])
        x, y = _golden(name, feats, rng)
        ex = out / name
        if ex.exists():
            shutil.rmtree(ex)
        ex.mkdir(parents=True)
        model.export(str(ex / "saved_model" / "1"), verbose=False)
        ref = model.predict(x, verbose=0).astype(np.float32)
        np.savez(ex / "reference.npz", features=x, output_0=ref, y_true=y[: len(x) // 2 or 1])
        np.savez(ex / "calibration.npz", features=x)
        inputs, outputs = [_tensor("features", feats)], [_tensor("output_0", k)]
        (ex / "example.json").write_text(json.dumps({
            "name": name, "task": task, "metric": metric, "labels": labels,
            "inputs": inputs, "outputs": outputs,
            "reference": {"inputs": ["features"], "outputs": ["output_0"],
                          "n_labeled": len(x) // 2 or 1, "target_key": "y_true"},
            "edgekit_version": "0.1.0"}, indent=2))
        arts = []
        for precision, opts in (("fp32", {}), ("fp16", {"quantization_dtype_map": {"float16": "*"}})):
            dest = ex / "exports" / "tfjs" / precision
            tfjs.converters.convert_tf_saved_model(str(ex / "saved_model" / "1"), str(dest),
                                                   signature_def="serving_default", **opts)
            arts.append({"format": "tfjs", "precision": precision, "path": f"tfjs/{precision}",
                         "size_bytes": tree_size(dest), "sha256": sha256_tree(dest),
                         "inputs": inputs, "outputs": outputs, "quantization": None,
                         "converter": "tensorflowjs", "converter_version": tfjs.__version__,
                         "seconds": 0.0})
        manifest.save(ex / "exports" / "manifest.json", {
            "edgekit_version": "0.1.0", "created": datetime.datetime.now(datetime.UTC).isoformat(),
            "source": {"path": "saved_model/1", "fingerprint": "", "example": name, "task": task,
                       "signature": "serving_default", "inputs": inputs, "outputs": outputs},
            "metadata": {}, "artifacts": arts, "failures": []})
    return out


if __name__ == "__main__":
    build(Path(sys.argv[1]))

"""A numpy forward pass of a saved Dense-only Sequential ``model.keras`` (no Keras, no TensorFlow).

The moons sweep figure is drawn after training, in the parent process of the training workers,
which has not imported Keras: loading seven two-layer models through Keras there would cost
TensorFlow's whole start-up (seconds) for a few thousand multiply-adds. :class:`DenseStack` reads
the archive's ``config.json`` and ``model.weights.h5`` (h5py) and evaluates the layers in float64.
tests/train/test_train_speed.py checks it against Keras on a trained example.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softmax": lambda z: (lambda e: e / e.sum(axis=-1, keepdims=True))(np.exp(z - z.max(axis=-1, keepdims=True))),
}


class DenseStack:
    """``model.keras`` of ``Input -> Dense ... -> Dense`` as a numpy function ``x -> outputs`` (float32).

    Raises:
        ValueError: the archive holds a layer other than InputLayer/Dense, or an unknown activation.
    """

    numpy_forward = True  # edgekit.train.plots calls it directly instead of through Keras

    def __init__(self, path: Path):
        import h5py

        with zipfile.ZipFile(path) as z:
            cfg = json.loads(z.read("config.json"))
            weights = z.read("model.weights.h5")
        layers = [lay for lay in cfg["config"]["layers"] if lay["class_name"] != "InputLayer"]
        bad = [lay["class_name"] for lay in layers if lay["class_name"] != "Dense"]
        if bad or cfg["class_name"] != "Sequential":
            raise ValueError(f"{path}: not a Dense-only Sequential model ({cfg['class_name']}, {bad})")
        self.layers = []
        with h5py.File(io.BytesIO(weights), "r") as f:
            for i, lay in enumerate(layers):
                act = lay["config"].get("activation", "linear")
                if act not in ACTIVATIONS:
                    raise ValueError(f"{path}: activation {act!r} not supported")
                grp = f["layers"]["dense" if i == 0 else f"dense_{i}"]["vars"]
                w = np.asarray(grp["0"], np.float64)
                b = np.asarray(grp["1"], np.float64) if lay["config"].get("use_bias", True) else 0.0
                self.layers.append((w, b, ACTIVATIONS[act]))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, np.float64)
        for w, b, act in self.layers:
            h = act(h @ w + b)
        return h.astype(np.float32)

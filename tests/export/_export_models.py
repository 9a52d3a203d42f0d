"""SavedModels that ``train/`` does not make, built inside the export tests.

Each builder writes ``dest/saved_model`` (Keras ``model.export``, TF backend) and
``dest/calibration.npz`` (representative rows keyed by input name). Weights are drawn
at random (seeded), biases and BatchNorm statistics included, so a converter that drops
a bias or folds BatchNorm wrongly shows up as a mismatch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _randomize(model, rng: np.random.Generator) -> None:
    import keras

    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = ws
            ws = [rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                  rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)]
        else:
            ws = [rng.normal(0, 0.5, w.shape) for w in ws]
        layer.set_weights([w.astype("float32") for w in ws])


def conv1d_pool(rng):
    """Conv1D + max pooling + global average pooling classifier, 3-class softmax; input (None, 16)."""
    import keras

    x = keras.Input((16,), name="signal")
    h = keras.layers.Reshape((16, 1))(x)
    h = keras.layers.Conv1D(4, 3, activation="relu")(h)
    h = keras.layers.MaxPooling1D(2)(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    y = keras.layers.Dense(3, activation="softmax")(h)
    return keras.Model(x, y), {"signal": rng.normal(0, 1, (64, 16))}


def two_in_two_out(rng):
    """Functional model with two inputs (defined 'zeta' then 'alpha', so sorted order differs)
    and two outputs (a regression head and a 3-class head)."""
    import keras

    z = keras.Input((3,), name="zeta")
    a = keras.Input((5,), name="alpha")
    h = keras.layers.Concatenate()([z, a])
    h = keras.layers.Dense(8, activation="tanh")(h)
    reg = keras.layers.Dense(1, name="reg")(h)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    return keras.Model([z, a], [reg, cls]), {"zeta": rng.normal(0, 1, (64, 3)),
                                             "alpha": rng.uniform(-2, 2, (64, 5))}


def batchnorm(rng):
    """Dense -> BatchNormalization (non-trivial moving statistics) -> relu -> Dense(1, sigmoid)."""
    import keras

    x = keras.Input((6,), name="features")
    h = keras.layers.Dense(10)(x)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Activation("relu")(h)
    y = keras.layers.Dense(1, activation="sigmoid")(h)
    return keras.Model(x, y), {"features": rng.normal(0, 1, (64, 6))}


BUILDERS = {"conv1d_pool": conv1d_pool, "two_in_two_out": two_in_two_out, "batchnorm": batchnorm}
QUICK = ("and_gate", "moons_h3")  # trained by the lead's quick_example fixture (tests/conftest.py)
MODELS = QUICK + tuple(BUILDERS)  # quick-trained examples + SavedModels train/ does not make


def build(name: str, dest: Path) -> tuple[Path, Path]:
    """Build model ``name`` into ``dest``; return (SavedModel dir, calibration.npz)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model, calib = BUILDERS[name](rng)
    _randomize(model, rng)
    dest.mkdir(parents=True, exist_ok=True)
    sm = dest / "saved_model"
    model.export(str(sm), verbose=False)
    cal = dest / "calibration.npz"
    np.savez(cal, **{k: v.astype("float32") for k, v in calib.items()})
    return sm, cal

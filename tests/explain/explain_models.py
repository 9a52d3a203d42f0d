"""Models for the explain tests, with faults placed on purpose (seeded, offline).

- :func:`mlp` / :func:`cnn`: small models; :func:`perturb` changes one named layer's weights, so a
  variant converted from the perturbed model diverges from the original at exactly that layer.
- :func:`saturating`: a Dense layer (``spike``) whose unit 0 is ``100 * relu(x0 - 1)``: zero on
  every calibration row (``x0 < 1``), up to ~200 on a few golden rows, so full-integer int8
  clips it there (the calibrated range of its output tensor is that of the other units, ~±3).
  The ``squash`` layer after it is a tanh, so the model's output stays in range.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _randomize_bn(model, rng) -> None:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype("float32"),
                               rng.normal(0, 0.3, b.shape).astype("float32"),
                               rng.normal(0, 0.3, m.shape).astype("float32"),
                               rng.uniform(0.5, 2.0, v.shape).astype("float32")])


def mlp(seed: int = 0):
    """Dense-BN-Dense-Dense-Dense; golden inputs (64, 8)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8,), name="features")
    x = keras.layers.Dense(16, activation="relu", name="d1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(16, activation="tanh", name="d2")(x)
    x = keras.layers.Dense(12, activation="relu", name="d3")(x)
    out = keras.layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inp, out, name="mlp")
    rng = np.random.default_rng(seed)
    _randomize_bn(model, rng)
    return model, {"features": rng.normal(size=(64, 8)).astype("float32")}


def cnn(seed: int = 0):
    """Conv-Conv-pool-Dense on 8x8x3 images; golden inputs (16, 8, 8, 3)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inp, out, name="cnn")
    rng = np.random.default_rng(seed)
    return model, {"image": rng.normal(size=(16, 8, 8, 3)).astype("float32")}


def perturb(model, layer: str, scale: float = 0.5, seed: int = 1):
    """A copy of ``model`` with ``layer``'s kernel moved by N(0, scale) noise; the rest identical."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    rng = np.random.default_rng(seed)
    w = clone.get_layer(layer).get_weights()
    w[0] = (w[0] + rng.normal(0, scale, w[0].shape)).astype("float32")
    clone.get_layer(layer).set_weights(w)
    return clone


def saturating(seed: int = 0):
    """The int8-saturating model; returns ``(model, golden inputs, calibration inputs)``."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = keras.Input((8,), name="features")
    d1 = keras.layers.Dense(16, activation="relu", name="d1")
    spike = keras.layers.Dense(16, activation="relu", name="spike")
    squash = keras.layers.Dense(8, activation="tanh", name="squash")
    head = keras.layers.Dense(1, name="head")
    out = head(squash(spike(d1(inp))))
    model = keras.Model(inp, out, name="saturating")
    w1 = rng.normal(0, 0.8, (8, 16)).astype("float32")
    w1[:, 0] = 0.0
    w1[0, 0] = 1.0                      # d1 unit 0 = relu(x0)
    d1.set_weights([w1, np.zeros(16, "float32")])
    w2 = rng.normal(0, 0.3, (16, 16)).astype("float32")
    w2[:, 0] = 0.0
    w2[0, 0] = 100.0                    # spike unit 0 = 100 * relu(x0 - 1)
    b2 = np.zeros(16, "float32")
    b2[0] = -100.0
    spike.set_weights([w2, b2])
    w3 = rng.normal(0, 0.3, (16, 8)).astype("float32")
    w3[0, :] = 0.02                     # squash reads the spike: tanh(2 + ...) on spiking rows
    squash.set_weights([w3, np.zeros(8, "float32")])
    head.set_weights([rng.normal(0, 0.5, (8, 1)).astype("float32"), np.zeros(1, "float32")])
    # spike_0 = relu(100*relu(x0) - 100): a ReLU in front keeps it at 0 below x0 = 1
    golden = rng.normal(size=(400, 8)).astype("float32")
    golden = golden[np.abs(golden).max(axis=1) < 2.8][:96]
    golden[:12, 0] = np.linspace(2.0, 2.7, 12, dtype="float32")   # a few rows where the spike fires
    calib = rng.normal(size=(600, 8)).astype("float32")
    calib = calib[(calib[:, 0] < 1.0) & (np.abs(calib).max(axis=1) < 3.0)][:200]
    return model, {"features": golden}, {"features": calib}

"""The realistic zoo: Keras models of the kinds people deploy, built with seeded random weights.

A small fixture registry (Polygraphy's ``tests/models/meta.py`` shape): each :class:`ZooModel`
names a builder returning ``(keras.Model, {input name: golden inputs})``, how many golden rows
it gets (fewer for heavy models: TF.js' pure-JS ``cpu`` backend and the Core ML numpy
evaluator are slow) and whether it is slow-marked. :func:`build` writes, under ``dest``:

- ``saved_model/`` — ``model.export(dir)`` (TensorFlow backend), what ``edgekit export`` reads;
- ``model.keras`` — the same model (the RNN re-trace reads it);
- ``calibration.npz`` — representative rows for full-integer int8;
- ``reference.npz`` — golden inputs and the SavedModel's outputs on them, keyed by the serving
  signature's names (verify compares every exported file with it);
- ``zoo.json`` — the entry's facts, and the Keras-vs-SavedModel difference on the golden rows.

Everything is offline: ``keras.applications`` with ``weights=None`` only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry.

    Attributes:
        name: directory name and table row.
        builder: ``builder(rng) -> (model, {input: float/int array of golden rows})``.
        rows: golden rows (default 16; verify needs at least 8 for a verdict).
        slow: slow-marked in the test suite (default False).
        about: what it exercises (for the table).
    """

    name: str
    builder: Callable
    rows: int = 16
    slow: bool = False
    about: str = ""


def _randomize_batchnorm(model, rng: np.random.Generator) -> None:
    """Give every BatchNormalization non-trivial statistics (fresh ones are 0/1 and hide folding bugs)."""
    import keras

    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.2, beta.shape).astype("float32"),
                               rng.normal(0, 0.2, mean.shape).astype("float32"),
                               rng.uniform(0.5, 2.0, var.shape).astype("float32")])


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


# ----------------------------------------------------------------------------- builders
def cnn_blocks(rng):
    """ResNet/MobileNet-style blocks: Conv2D + BatchNorm + Add, DepthwiseConv2D, SeparableConv2D,
    global pooling, softmax head; input (None, 32, 32, 3)."""
    import keras
    from keras import layers as L

    x = keras.Input((32, 32, 3), name="image")
    h = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    h = L.ReLU()(L.BatchNormalization()(h))
    r = L.Conv2D(8, 3, padding="same")(h)
    r = L.BatchNormalization()(r)
    h = L.ReLU(6.0)(L.Add()([h, r]))
    h = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(h)
    h = L.BatchNormalization()(h)
    h = L.Activation("relu")(h)
    h = L.SeparableConv2D(16, 3, strides=2, padding="same", activation="relu")(h)
    h = L.MaxPooling2D(2)(h)
    h = L.AveragePooling2D(2, padding="same")(h)
    h = L.GlobalAveragePooling2D()(h)
    h = L.Dropout(0.2)(h)
    y = L.Dense(5, activation="softmax")(h)
    return keras.Model(x, y), {"image": rng.uniform(-1, 1, (64, 32, 32, 3))}


def unet_small(rng):
    """A small UNet: strided convs down, Conv2DTranspose + Concatenate skips up, a bilinear
    UpSampling2D and a Resizing; per-pixel sigmoid; input (None, 32, 32, 3). No BatchNorm: Keras
    3.15.1 exports BatchNorm in training mode beside Resizing (keras-team/keras#23166)."""
    import keras
    from keras import layers as L

    x = keras.Input((32, 32, 3), name="image")
    d1 = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    d2 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(d1)
    d3 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(d2)
    u2 = L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(d3)
    u2 = L.Concatenate()([u2, d2])
    u1 = L.Conv2DTranspose(8, 2, strides=2, padding="valid")(u2)
    u1 = L.Concatenate()([u1, d1])
    side = L.UpSampling2D(4, interpolation="bilinear")(L.Conv2D(4, 1)(d3))
    h = L.Concatenate()([u1, side])
    h = L.Resizing(24, 24, interpolation="bilinear")(h)
    y = L.Conv2D(1, 1, activation="sigmoid")(h)
    return keras.Model(x, y), {"image": rng.uniform(-1, 1, (64, 32, 32, 3))}


def mobilenet_v2(rng):
    """keras.applications.MobileNetV2(alpha=0.35) at 96x96, 10 classes, weights=None."""
    import keras

    m = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
    return m, {m.inputs[0].name: rng.uniform(-1, 1, (64, 96, 96, 3))}


def mobilenet_v3_small(rng):
    """keras.applications.MobileNetV3Small at 96x96 (hard-swish, squeeze-excite, built-in
    Rescaling), 10 classes, weights=None; pixel values 0-255."""
    import keras

    m = keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), weights=None, classes=10,
                                            include_preprocessing=True)
    return m, {m.inputs[0].name: rng.uniform(0, 255, (64, 96, 96, 3))}


def efficientnet_b0(rng):
    """keras.applications.EfficientNetB0 at 64x64 (swish, squeeze-excite, built-in Rescaling and
    Normalization), 10 classes, weights=None; pixel values 0-255."""
    import keras

    m = keras.applications.EfficientNetB0(input_shape=(64, 64, 3), weights=None, classes=10)
    return m, {m.inputs[0].name: rng.uniform(0, 255, (64, 64, 64, 3))}


VOCAB, SEQ = 40, 12


def lstm_text(rng):
    """Embedding + LSTM text classifier on int32 token ids, sequence length 12."""
    import keras
    from keras import layers as L

    x = keras.Input((SEQ,), dtype="int32", name="ids")
    h = L.Embedding(VOCAB, 8)(x)
    h = L.LSTM(16)(h)
    y = L.Dense(3, activation="softmax")(h)
    return keras.Model(x, y), {"ids": rng.integers(0, VOCAB, (64, SEQ)).astype("int32")}


def bigru_text(rng):
    """Embedding + Bidirectional GRU (sequences) + GlobalMaxPooling1D on int32 token ids."""
    import keras
    from keras import layers as L

    x = keras.Input((SEQ,), dtype="int32", name="ids")
    h = L.Embedding(VOCAB, 8)(x)
    h = L.Bidirectional(L.GRU(12, return_sequences=True))(h)
    h = L.GlobalMaxPooling1D()(h)
    y = L.Dense(2, activation="softmax")(h)
    return keras.Model(x, y), {"ids": rng.integers(0, VOCAB, (64, SEQ)).astype("int32")}


def rnn_sensor(rng):
    """Float sequences (12 steps x 4 channels) through a stacked LSTM (sequences) -> GRU -> Dense:
    the RNN route on float32 inputs."""
    import keras
    from keras import layers as L

    x = keras.Input((SEQ, 4), name="sequence")
    h = L.LSTM(10, return_sequences=True)(x)
    h = L.GRU(8)(h)
    y = L.Dense(1)(h)
    return keras.Model(x, y), {"sequence": rng.normal(0, 1, (64, SEQ, 4))}


def transformer_block(rng):
    """A Transformer encoder block: MultiHeadAttention (2 heads), residual Add, LayerNormalization,
    a feed-forward Dense with exact GELU (Keras' default ``gelu``), mean pooling, softmax head;
    input (None, 8, 16) float embeddings."""
    import keras
    from keras import layers as L

    x = keras.Input((8, 16), name="tokens")
    a = L.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    h = L.LayerNormalization(epsilon=1e-6)(L.Add()([x, a]))
    f = L.Dense(32, activation="gelu")(h)
    f = L.Dense(16)(f)
    h = L.LayerNormalization(epsilon=1e-6)(L.Add()([h, f]))
    h = L.GlobalAveragePooling1D()(h)
    y = L.Dense(4, activation="softmax")(h)
    return keras.Model(x, y), {"tokens": rng.normal(0, 1, (64, 8, 16))}


def keras_ops(rng):
    """keras.ops argmax (on floats), argmin cast to int64 (TF.js has no int64: compared by value),
    cumsum, top_k and einsum, as five named outputs."""
    import keras
    from keras import layers as L
    from keras import ops

    class Ops(L.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 5), initializer="random_normal", name="w")

        def call(self, x):
            h = ops.einsum("bd,de->be", x, self.w)
            pair = ops.einsum("bi,bj->bij", h, h)
            values, _ = ops.top_k(h, k=3)
            return {"argmax": ops.argmax(h, axis=-1), "argmin64": ops.cast(ops.argmin(h, axis=-1), "int64"),
                    "cumsum": ops.cumsum(h, axis=-1),
                    "topk": values, "outer": ops.sum(pair, axis=-1)}

    x = keras.Input((6,), name="features")
    outs = Ops()(x)
    return keras.Model(x, outs), {"features": rng.normal(0, 1, (64, 6))}


ACTIVATIONS = ("celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
               "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish", "relu", "relu6",
               "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign", "sparse_plus",
               "sparse_sigmoid", "sparsemax", "squareplus", "tanh", "tanh_shrink")
# not here: ``threshold`` (needs its threshold/default_value arguments: no activation string)


def activations(rng):
    """Every stock Keras 3.15 activation usable by name (aliases hard_swish/swish once) as a
    Dense(4, activation=...) branch of one model, concatenated; input (None, 6)."""
    import keras
    from keras import layers as L

    x = keras.Input((6,), name="features")
    branches = []
    for name in ACTIVATIONS:
        units = 8 if name == "glu" else 4  # glu halves its last axis
        branches.append(L.Dense(units, activation=name, name=f"act_{name}")(x))
    y = L.Concatenate()(branches)
    return keras.Model(x, y), {"features": rng.normal(0, 1.5, (64, 6))}


ZOO: dict[str, ZooModel] = {z.name: z for z in (
    ZooModel("cnn_blocks", cnn_blocks, about="Conv2D+BatchNorm+Add, DepthwiseConv2D, SeparableConv2D, pooling"),
    ZooModel("unet_small", unet_small, about="Conv2DTranspose+Concatenate, bilinear UpSampling2D, Resizing"),
    ZooModel("mobilenet_v2", mobilenet_v2, rows=8, slow=True, about="keras.applications MobileNetV2 a0.35 96x96"),
    ZooModel("mobilenet_v3_small", mobilenet_v3_small, rows=8, slow=True,
             about="keras.applications MobileNetV3Small 96x96 (hard-swish)"),
    ZooModel("efficientnet_b0", efficientnet_b0, rows=8, slow=True,
             about="keras.applications EfficientNetB0 64x64 (swish)"),
    ZooModel("lstm_text", lstm_text, about="Embedding + LSTM on int32 ids"),
    ZooModel("bigru_text", bigru_text, about="Embedding + Bidirectional GRU on int32 ids"),
    ZooModel("rnn_sensor", rnn_sensor, about="LSTM -> GRU on float sequences"),
    ZooModel("transformer_block", transformer_block, about="MultiHeadAttention, LayerNormalization, exact GELU"),
    ZooModel("keras_ops", keras_ops, about="keras.ops argmax, cumsum, top_k, einsum"),
    ZooModel("activations", activations, about="every stock Keras activation"),
)}


def build(name: str, dest: Path) -> Path:
    """Build zoo model ``name`` into ``dest`` (see the module docstring); returns the SavedModel dir.

    Args:
        name: a key of :data:`ZOO`.
        dest: directory to fill (created).
    """
    import keras
    import tensorflow as tf

    entry = ZOO[name]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model, feeds = entry.builder(rng)
    _randomize_batchnorm(model, rng)
    dest.mkdir(parents=True, exist_ok=True)
    sm = dest / "saved_model"
    model.export(str(sm), verbose=False)
    model.save(str(dest / "model.keras"))
    feeds = {k: (v if v.dtype.kind in "iu" else v.astype("float32")) for k, v in feeds.items()}
    golden = {k: v[: entry.rows] for k, v in feeds.items()}
    np.savez(dest / "calibration.npz", **feeds)
    fn = tf.saved_model.load(str(sm)).signatures["serving_default"]
    outs = {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in golden.items()}).items()}
    np.savez(dest / "reference.npz", **golden, **outs)
    keras_out = model(golden if len(golden) > 1 else next(iter(golden.values())), training=False)
    flat = keras_out if isinstance(keras_out, dict) else {
        k: v for k, v in zip(sorted(outs), keras_out if isinstance(keras_out, (list, tuple)) else [keras_out])}
    diff = {k: float(np.abs(np.asarray(flat[k], dtype=np.float64) - outs[k]).max()) for k in outs if k in flat}
    (dest / "zoo.json").write_text(json.dumps({
        "name": name, "about": entry.about, "rows": entry.rows, "inputs": sorted(golden),
        "outputs": sorted(outs), "keras_vs_savedmodel_max_abs": diff}, indent=2))
    return sm

"""The bring-your-own-model fixtures: small Keras models with seeded weights, built in the tests.

Each builder returns ``(model, inputs)``: the model (TensorFlow backend) and a few realistic
input rows keyed by input name (the ``--inputs`` / calibration data a user would pass).
Nothing is downloaded. The JAX-trained model is built and trained in a subprocess
(:func:`save_jax_model`) because Keras fixes its backend per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

VOCAB, SEQ = 40, 10
ROWS = 64


def text_classifier(seed: int = 0):
    """Token ids (int32) -> Embedding -> average pooling -> softmax over 3 classes."""
    import keras

    keras.utils.set_random_seed(seed)
    ids = keras.Input((SEQ,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(VOCAB, 8, name="embed")(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    rng = np.random.default_rng(seed)
    return keras.Model(ids, out, name="text_classifier"), \
        {"token_ids": rng.integers(0, VOCAB, (ROWS, SEQ)).astype("int32")}


def uint8_image(seed: int = 0):
    """Camera frames (uint8, 12x12x3) -> Rescaling(1/255) inside the model -> conv -> 2 logits."""
    import keras

    keras.utils.set_random_seed(seed)
    img = keras.Input((12, 12, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255.0)(img)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2)(x)
    rng = np.random.default_rng(seed)
    return keras.Model(img, out, name="uint8_image"), \
        {"image": rng.integers(0, 256, (ROWS, 12, 12, 3)).astype("uint8")}


def resize_batchnorm(seed: int = 0):
    """Resizing + BatchNormalization: Keras 3.15.1 exports BN in training mode (keras-team/keras#23166)."""
    import keras

    keras.utils.set_random_seed(seed)
    img = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Resizing(8, 8)(img)
    x = keras.layers.Conv2D(4, 3)(x)
    bn = keras.layers.BatchNormalization()
    x = bn(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(img, keras.layers.Dense(2)(x), name="resize_batchnorm")
    bn.moving_mean.assign(np.full(4, 0.5, "float32"))  # trained-looking statistics, far from a batch's
    bn.moving_variance.assign(np.full(4, 2.0, "float32"))
    rng = np.random.default_rng(seed)
    return model, {"image": rng.standard_normal((ROWS, 12, 12, 3)).astype("float32")}


def multi_input(seed: int = 0):
    """Inputs of different ranks and dtypes: int32 ids (N, 10), uint8 image (N, 8, 8, 3),
    float32 features (N, 5), bool flag (N, 1); two outputs."""
    import keras

    keras.utils.set_random_seed(seed)
    ids = keras.Input((SEQ,), dtype="int32", name="ids")
    img = keras.Input((8, 8, 3), dtype="uint8", name="image")
    feat = keras.Input((5,), name="features")
    flag = keras.Input((1,), dtype="bool", name="flag")
    e = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 4)(ids))
    i = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3)(keras.layers.Rescaling(1 / 255.0)(img)))
    f = keras.layers.Dense(4, activation="tanh")(feat)
    h = keras.layers.Concatenate()([e, i, f, keras.ops.cast(flag, "float32")])
    out_cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    out_reg = keras.layers.Dense(1, name="reg")(h)
    rng = np.random.default_rng(seed)
    return keras.Model([ids, img, feat, flag], [out_cls, out_reg], name="multi_input"), {
        "ids": rng.integers(0, VOCAB, (ROWS, SEQ)).astype("int32"),
        "image": rng.integers(0, 256, (ROWS, 8, 8, 3)).astype("uint8"),
        "features": rng.standard_normal((ROWS, 5)).astype("float32"),
        "flag": rng.random((ROWS, 1)) < 0.5}


def wide_dense(seed: int = 0, features: int = 64):
    """64 float features -> Dense: the int8 row-selection case (per-feature ranges select no row)."""
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input((features,), name="features")
    h = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(h), name="wide_dense")
    rng = np.random.default_rng(seed)
    return model, {"features": rng.standard_normal((200, features)).astype("float32")}


BUILDERS = {"text_classifier": text_classifier, "uint8_image": uint8_image, "multi_input": multi_input,
            "resize_batchnorm": resize_batchnorm}


def save(name: str, dest: Path) -> tuple[Path, Path]:
    """Build fixture ``name``, save ``dest/<name>.keras`` and ``dest/<name>_inputs.npz``."""
    model, inputs = BUILDERS[name]() if name in BUILDERS else wide_dense()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{name}.keras"
    model.save(path)
    np.savez(dest / f"{name}_inputs.npz", **inputs)
    return path, dest / f"{name}_inputs.npz"


JAX_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    import numpy as np, keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 6)).astype("float32")
    y = (x[:, :1] + 0.5 * x[:, 1:2] > 0).astype("float32")
    inp = keras.Input((6,), name="features")
    h = keras.layers.Dense(8, activation="relu")(inp)
    h = keras.layers.Dropout(0.1)(h)
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h), name="jax_mlp")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    model.save(sys.argv[1])
    np.savez(sys.argv[2], features=x[:64])
    np.save(sys.argv[3], model.predict(x[:64], verbose=0))
""")


def save_jax_model(dest: Path) -> tuple[Path, Path, Path]:
    """Train and save a small MLP on the JAX backend in a subprocess.

    Returns:
        ``(model.keras, inputs.npz, jax_predictions.npy)``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    paths = (dest / "jax_mlp.keras", dest / "jax_mlp_inputs.npz", dest / "jax_mlp_predictions.npy")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT, *map(str, paths)], env=env, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"JAX training failed: {proc.stderr[-2000:]}")
    return paths

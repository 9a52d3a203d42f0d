"""A fast, same-math replacement for ``model.fit`` on tiny data sets.

Keras' ``fit`` spends 25-50 ms per epoch in Python bookkeeping; on the tutorial's
data sets (4 to 800 rows) that is almost all of the training time. :func:`fit`
runs the same mini-batch SGD — per-epoch reshuffle, the same batch size with a
short last batch, the loss plus the model's regularisation losses, the Keras
optimizer — but compiles whole epochs (several per call) into one XLA program.
The short last batch is padded and masked so shapes stay static: the masked loss
is exactly the mean over the real rows, as Keras computes it.

Per-epoch hooks (validation loss, early stopping, checkpoints) run in Python
only when asked for, once per epoch, with real Keras callbacks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

LOSSES = ("mse", "binary_crossentropy", "sparse_categorical_crossentropy")


@dataclass
class History:
    """Per-epoch training (and validation) loss, as ``keras.callbacks.History.history``."""

    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    epoch_axis: list[int] = field(default_factory=list)  # the epoch each history entry ends
    epochs_run: int = 0
    seconds: float = 0.0


def _per_sample_loss(name: str):
    import keras

    if name == "mse":
        return keras.losses.mean_squared_error
    if name == "binary_crossentropy":
        return keras.losses.binary_crossentropy
    if name == "sparse_categorical_crossentropy":
        return keras.losses.sparse_categorical_crossentropy
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def _targets(y, loss: str) -> np.ndarray:
    """Targets shaped as Keras' fit would: (n,) class ids, else (n, 1) for 1-D targets."""
    y = np.asarray(y)
    if loss == "sparse_categorical_crossentropy":
        return y.reshape(-1)
    return y.reshape(-1, 1) if y.ndim == 1 else y


def fit(model, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, optimizer, loss: str,
        seed: int = 0, validation: tuple[np.ndarray, np.ndarray] | None = None,
        callbacks: list | None = None, progress: Callable[[int, int, float], None] | None = None,
        epochs_per_call: int | None = None, jit_compile: bool = True) -> History:
    """Train ``model`` in place with mini-batch gradient descent.

    Args:
        model: a built Keras model.
        x, y: training inputs and targets (cast to float32; class ids for sparse CE).
        epochs: number of passes over the data.
        batch_size: rows per step; the last batch of an epoch may be short, as in Keras.
        optimizer: a Keras optimizer instance.
        loss: one of ``mse``, ``binary_crossentropy``, ``sparse_categorical_crossentropy``.
        seed: seeds the per-epoch shuffles (default 0).
        validation: ``(x_val, y_val)``; adds ``val_loss`` per epoch (default none).
        callbacks: Keras callbacks given ``on_train_begin``/``on_epoch_end``/``on_train_end``
            (e.g. EarlyStopping, ModelCheckpoint); forces one epoch per call (default none).
        progress: ``progress(epoch_done, epochs, loss)`` after each call (default none).
        epochs_per_call: epochs compiled into one call (default: all of them, in chunks
            of at most ``epochs // 20`` so progress can be shown; 1 with callbacks or validation).
        jit_compile: compile with XLA (default True).

    Returns:
        The :class:`History`.
    """
    import tensorflow as tf

    per_sample = _per_sample_loss(loss)
    x = tf.constant(np.asarray(x, np.float32))
    y_np = _targets(y, loss)
    y = tf.constant(y_np.astype(np.int32 if loss == "sparse_categorical_crossentropy" else np.float32))
    n = int(x.shape[0])
    bs = min(batch_size, n)
    nb = math.ceil(n / bs)
    pad = nb * bs - n
    mask_np = np.ones(nb * bs, np.float32)
    if pad:
        mask_np[n:] = 0.0
    mask = tf.constant(mask_np.reshape(nb, bs))
    variables = model.trainable_variables
    optimizer.build(variables)
    callbacks = list(callbacks or [])
    per_epoch_hooks = bool(callbacks) or validation is not None
    if epochs_per_call is None:
        epochs_per_call = 1 if per_epoch_hooks else max(1, epochs // 20)

    def one_epoch(epoch):
        # argsort of stateless uniforms: a seeded permutation XLA can compile
        perm = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([seed, epoch])))
        if pad:
            perm = tf.concat([perm, perm[:pad]], 0)
        perm = tf.reshape(perm, (nb, bs))
        total = tf.constant(0.0)
        for b in tf.range(nb):
            idx = perm[b]
            w = mask[b]
            xb = tf.gather(x, idx)
            yb = tf.gather(y, idx)
            with tf.GradientTape() as tape:
                pred = model(xb, training=True)
                lvec = per_sample(yb, pred)
                data_loss = tf.reduce_sum(lvec * w) / tf.reduce_sum(w)
                reg = tf.add_n(model.losses) if model.losses else 0.0
                value = data_loss + reg
            grads = tape.gradient(value, variables)
            optimizer.apply_gradients(zip(grads, variables))
            total += value * tf.reduce_sum(w)
        return total / n

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def run_epochs(start, count):
        last = tf.constant(0.0)
        for e in tf.range(count):
            last = one_epoch(start + e)
        return last

    if validation is not None:
        xv = tf.constant(np.asarray(validation[0], np.float32))
        yv_np = _targets(validation[1], loss)
        yv = tf.constant(yv_np.astype(np.int32 if loss == "sparse_categorical_crossentropy" else np.float32))

        @tf.function(jit_compile=jit_compile)
        def val_loss():
            pred = model(xv, training=False)
            reg = tf.add_n(model.losses) if model.losses else 0.0
            return tf.reduce_mean(per_sample(yv, pred)) + reg

    hist = History()
    if validation is not None:
        hist.history["val_loss"] = []
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    model.stop_training = False
    t0 = time.perf_counter()
    epoch = 0
    while epoch < epochs and not model.stop_training:
        count = min(epochs_per_call, epochs - epoch)
        value = float(run_epochs(tf.constant(epoch, tf.int32), tf.constant(count, tf.int32)))
        epoch += count
        hist.history["loss"].append(value)
        hist.epoch_axis.append(epoch)
        logs = {"loss": value}
        if validation is not None:
            logs["val_loss"] = float(val_loss())
            hist.history["val_loss"].append(logs["val_loss"])
        for cb in callbacks:
            cb.on_epoch_end(epoch - 1, logs)
        if progress is not None:
            progress(epoch, epochs, value)
    for cb in callbacks:
        cb.on_train_end()
    hist.epochs_run = epoch
    hist.seconds = time.perf_counter() - t0
    return hist

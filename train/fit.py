"""A fast, same-math replacement for ``model.fit`` on tiny data sets.

Keras' ``fit`` spends 25-50 ms per epoch in Python bookkeeping; on the tutorial's
data sets (4 to 800 rows) that is almost all of the training time. :class:`Trainer`
runs the same mini-batch gradient descent — a fresh shuffle every epoch, the same
batch size with a short last batch, the loss plus the model's regularisation
losses, the Keras optimizer — but compiles whole epochs (several per call) into
one XLA program. Rows are padded to a fixed capacity and masked, so shapes stay
static: the masked loss is exactly the mean over the real rows of each batch, as
Keras computes it, and one compiled trainer serves data sets of any size up to
its capacity (the grid search's refit reuses it instead of recompiling).

Per-epoch hooks (validation loss, early stopping, checkpoints) run in Python
only when asked for, once per epoch, with real Keras callbacks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

LOSSES = ("mse", "binary_crossentropy", "sparse_categorical_crossentropy")


@dataclass
class History:
    """Training (and validation) loss, as ``keras.callbacks.History.history``."""

    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    epoch_axis: list[int] = field(default_factory=list)  # the epoch each history entry ends
    epochs_run: int = 0
    seconds: float = 0.0


def begin_training(model, callbacks, validation, epochs: int, epochs_per_call: int | None):
    """The start of a fit shared by every trainer: callbacks started, a History ready, and the
    number of epochs per compiled call (1 when callbacks or validation need every epoch).

    Returns:
        ``(callbacks list, epochs_per_call, History)``.
    """
    callbacks = list(callbacks or [])
    if epochs_per_call is None:
        epochs_per_call = 1 if (callbacks or validation is not None) else max(1, epochs // 20)
    hist = History()
    if validation is not None:
        hist.history["val_loss"] = []
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    model.stop_training = False
    return callbacks, epochs_per_call, hist


def _per_sample_loss(name: str):
    import keras

    table = {"mse": keras.losses.mean_squared_error,
             "binary_crossentropy": keras.losses.binary_crossentropy,
             "sparse_categorical_crossentropy": keras.losses.sparse_categorical_crossentropy}
    if name not in table:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    return table[name]


def _targets(y, loss: str) -> np.ndarray:
    """Targets shaped as Keras' fit would: (n,) class ids, else (n, 1) for 1-D targets."""
    y = np.asarray(y)
    if loss == "sparse_categorical_crossentropy":
        return y.reshape(-1).astype(np.int32)
    return (y.reshape(-1, 1) if y.ndim == 1 else y).astype(np.float32)


class Trainer:
    """TensorFlow backend: compiled epochs for one model/optimizer, reusable for any data up to ``capacity`` rows.

    Args:
        model: a built Keras model (trained in place).
        optimizer: a Keras optimizer instance.
        loss: one of ``mse``, ``binary_crossentropy``, ``sparse_categorical_crossentropy``.
        batch_size: rows per step; the last batch of an epoch may be short, as in Keras.
        capacity: most training rows a fit may pass.
        n_features: input width; ``target_shape``: per-row target shape (default ``(1,)``).
        val_capacity: most validation rows (default 0: no validation).
        jit_compile: compile with XLA (default True).
        fixed_rows: every fit passes exactly ``capacity`` rows, so the number of batches is a
            compile-time constant (faster; default False).
        members: ``model`` holds this many networks (its output ``[B, members, ...]``, e.g.
            :mod:`edgekit.train.fit_stacked`), trained together on the same rows and batches: each
            member's loss is its own mean loss plus its own regularisation, the step minimises
            their sum (members share no weight, so each gets exactly its own gradient), and the
            history's loss is a per-member list (default 0: one network).
        member_regularization: ``() -> [members]`` tensor of each member's regularisation
            (default none: zeros).
    """

    def __init__(self, model, optimizer, loss: str, batch_size: int, capacity: int, n_features: int,
                 target_shape: tuple = (1,), val_capacity: int = 0, jit_compile: bool = True,
                 fixed_rows: bool = False, members: int = 0, member_regularization: Callable | None = None):
        import tensorflow as tf

        self.model, self.optimizer, self.loss, self.batch_size = model, optimizer, loss, batch_size
        per_sample = _per_sample_loss(loss)
        sparse = loss == "sparse_categorical_crossentropy"
        ydt, yshape = (tf.int32, ()) if sparse else (tf.float32, tuple(target_shape))
        bs = batch_size
        self.capacity, self.val_capacity, self.fixed_rows = capacity, val_capacity, fixed_rows
        self.x = tf.Variable(tf.zeros((capacity + bs, n_features)), trainable=False)
        self.y = tf.Variable(tf.zeros((capacity + bs, *yshape), ydt), trainable=False)
        self.n = tf.Variable(0, trainable=False)
        variables = model.trainable_variables
        optimizer.build(variables)
        self.members = members
        if members and val_capacity:
            raise ValueError("a side-by-side trainer takes no validation data")
        if members:
            def reg():  # each member's own regularisation, [M]
                return member_regularization() if member_regularization else tf.zeros([members])

            def member_losses(yb, pred):  # [B, M]: each member's per-sample loss on the shared targets
                return per_sample(tf.repeat(tf.expand_dims(yb, 1), members, axis=1), pred)
        else:
            def reg():
                return tf.add_n(model.losses) if model.losses else 0.0

            member_losses = per_sample
        zero = tf.zeros([members]) if members else tf.constant(0.0)
        axis = 0 if members else None

        def one_epoch(epoch, seed):
            n = self.n
            rows = tf.range(capacity + bs)
            u = tf.random.stateless_uniform([capacity + bs], seed=tf.stack([seed, epoch]))
            # argsort of seeded uniforms: a permutation XLA compiles; padding rows sort last
            perm = tf.argsort(tf.where(rows < n, u, 2.0 + tf.cast(rows, tf.float32)))
            nb = (n + bs - 1) // bs if not fixed_rows else -(-capacity // bs)
            total = zero
            b = tf.constant(0)
            while b < nb:  # a while loop: XLA needs no compile-time trip count
                idx = tf.slice(perm, [b * bs], [bs])
                w = tf.cast(b * bs + tf.range(bs) < n, tf.float32)
                xb, yb = tf.gather(self.x, idx), tf.gather(self.y, idx)
                with tf.GradientTape() as tape:
                    lvec = member_losses(yb, model(xb, training=True))
                    wm = w[:, None] if members else w
                    value = tf.reduce_sum(lvec * wm, axis=axis) / tf.reduce_sum(w) + reg()
                    objective = tf.reduce_sum(value) if members else value
                grads = tape.gradient(objective, variables)
                optimizer.apply_gradients(zip(grads, variables))
                total += value * tf.reduce_sum(w)
                b += 1
            return total / tf.cast(n, tf.float32)

        @tf.function(jit_compile=jit_compile)
        def run_epochs(start, count, seed):
            last = zero
            for e in tf.range(count):
                last = one_epoch(start + e, seed)
            return last

        self._run_epochs = run_epochs
        if val_capacity:
            self.xv = tf.Variable(tf.zeros((val_capacity, n_features)), trainable=False)
            self.yv = tf.Variable(tf.zeros((val_capacity, *yshape), ydt), trainable=False)
            self.nv = tf.Variable(0, trainable=False)

            def val_loss():
                w = tf.cast(tf.range(val_capacity) < self.nv, tf.float32)
                lvec = per_sample(self.yv, model(self.xv, training=False))
                return tf.reduce_sum(lvec * w) / tf.reduce_sum(w) + reg()

            @tf.function(jit_compile=jit_compile)
            def run_epochs_val(start, count, seed):
                """``run_epochs`` and then the validation loss, in one call (one dispatch per epoch)."""
                last = tf.constant(0.0)
                for e in tf.range(count):
                    last = one_epoch(start + e, seed)
                return tf.stack([last, val_loss()])

            self._val_loss = tf.function(val_loss, jit_compile=jit_compile)
            self._run_epochs_val = run_epochs_val

    def _load(self, xvar, yvar, nvar, x, y, cap):
        x = np.asarray(x, np.float32)
        y = _targets(y, self.loss)
        if len(x) > cap or len(x) == 0 or (xvar is self.x and self.fixed_rows and len(x) != cap):
            raise ValueError(f"rows must be in 1..{cap}, got {len(x)}")
        xp = np.zeros(tuple(xvar.shape), np.float32)
        yp = np.zeros(tuple(yvar.shape), y.dtype)
        xp[: len(x)], yp[: len(y)] = x, y
        xvar.assign(xp)
        yvar.assign(yp)
        nvar.assign(len(x))

    def fit(self, x, y, *, epochs: int, seed: int = 0, validation=None, callbacks=None,
            progress: Callable | None = None, epochs_per_call: int | None = None) -> History:
        """Train for ``epochs`` on ``(x, y)``; see :func:`fit` for the arguments."""
        import tensorflow as tf

        self._load(self.x, self.y, self.n, x, y, self.capacity)
        if validation is not None:
            self._load(self.xv, self.yv, self.nv, validation[0], validation[1], self.val_capacity)
        model = self.model
        callbacks, epochs_per_call, hist = begin_training(model, callbacks, validation, epochs, epochs_per_call)
        t0 = time.perf_counter()
        epoch = 0
        seed_t = tf.constant(seed, tf.int32)
        while epoch < epochs and not model.stop_training:
            count = min(epochs_per_call, epochs - epoch)
            args = (tf.constant(epoch, tf.int32), tf.constant(count, tf.int32), seed_t)
            if validation is not None:
                value, val = (float(v) for v in self._run_epochs_val(*args).numpy())
            else:
                out = self._run_epochs(*args).numpy()
                value = [float(v) for v in out] if self.members else float(out)
            epoch += count
            hist.history["loss"].append(value)
            hist.epoch_axis.append(epoch)
            total = float(np.sum(value))  # members: the summed loss the step minimises
            logs = {"loss": total}
            if validation is not None:
                logs["val_loss"] = val
                hist.history["val_loss"].append(val)
            for cb in callbacks:
                cb.on_epoch_end(epoch - 1, logs)
            if progress is not None:
                progress(epoch, epochs, total)
        for cb in callbacks:
            cb.on_train_end()
        hist.epochs_run = epoch
        hist.seconds = time.perf_counter() - t0
        return hist


def fit(model, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, optimizer, loss: str,
        seed: int = 0, validation: tuple[np.ndarray, np.ndarray] | None = None,
        callbacks: list | None = None, progress: Callable[[int, int, float], None] | None = None,
        epochs_per_call: int | None = None, jit_compile: bool = True) -> History:
    """Train ``model`` in place with mini-batch gradient descent (one-off :class:`Trainer`).

    Args:
        model: a built Keras model.
        x, y: training inputs and targets (float32; class ids for sparse CE).
        epochs: number of passes over the data.
        batch_size: rows per step; the last batch of an epoch may be short, as in Keras.
        optimizer: a Keras optimizer instance.
        loss: one of ``mse``, ``binary_crossentropy``, ``sparse_categorical_crossentropy``.
        seed: seeds the per-epoch shuffles (default 0).
        validation: ``(x_val, y_val)``; adds ``val_loss`` per epoch (default none).
        callbacks: Keras callbacks given ``on_train_begin``/``on_epoch_end``/``on_train_end``
            (e.g. EarlyStopping, ModelCheckpoint) (default none).
        progress: ``progress(epoch_done, epochs, loss)`` after each call (default none).
        epochs_per_call: epochs compiled into one call (default ``epochs // 20`` so progress
            can be shown, or 1 with callbacks or validation).
        jit_compile: compile with XLA (default True).

    Returns:
        The :class:`History`.
    """
    from edgekit.train import distribute

    if distribute.ACTIVE is not None and distribute.ACTIVE.distribute is not None:
        if validation is not None or callbacks:
            raise ValueError("a distributed fit takes no validation data or callbacks")
        return distribute.distributed_fit(model, x, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                                          loss=loss, seed=seed, progress=progress, name=model.name)
    x = np.asarray(x, np.float32)
    yt = _targets(y, loss)
    trainer = make_trainer(model, optimizer, loss, min(batch_size, len(x)), len(x), x.shape[1],
                           target_shape=yt.shape[1:], val_capacity=0 if validation is None else len(validation[0]),
                           jit_compile=jit_compile, fixed_rows=True)
    return trainer.fit(x, yt, epochs=epochs, seed=seed, validation=validation, callbacks=callbacks,
                       progress=progress, epochs_per_call=epochs_per_call)


def make_trainer(model, optimizer, loss: str, batch_size: int, capacity: int, n_features: int, **kwargs):
    """The fast trainer for the running Keras backend (same arguments as :class:`Trainer`).

    TensorFlow: :class:`Trainer` (``tf.function`` + XLA); JAX: :class:`edgekit.train.fit_jax.JaxTrainer`
    (``jax.jit``); any other backend (torch): :class:`edgekit.train.fit_keras.KerasFitTrainer`, Keras'
    own ``fit`` with the same batches, loss and optimizer but no whole-epoch compilation.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        cls = Trainer
    elif backend == "jax":
        from edgekit.train.fit_jax import JaxTrainer as cls
    else:
        from edgekit.train.fit_keras import KerasFitTrainer as cls
    return cls(model, optimizer, loss, batch_size, capacity, n_features, **kwargs)

"""The JAX-backend twin of :mod:`edgekit.train.fit`: whole epochs in one ``jax.jit`` program.

Same math as the TensorFlow trainer — a fresh seeded shuffle every epoch, the same batch
size with a short last batch, the masked mean loss over the real rows of each batch plus
the model's regularisation losses, the Keras optimizer — written with Keras' stateless API
(``model.stateless_call``, ``optimizer.stateless_apply``) so the whole epoch loop is one
traced function of (weights, optimizer state, data). Rows are padded to a fixed capacity
and masked, so one compiled program serves any fit up to that capacity (the grid search
reuses it across folds and candidates). The shuffle comes from ``jax.random`` keyed by
(seed, epoch): the data order is seeded and repeatable, but not the TensorFlow trainer's
order (and the two backends draw different initial weights from the same seed), so
backends are compared by their quality bars, not by weights.

After every call the new values are written back into the Keras variables, so callbacks
(EarlyStopping, ModelCheckpoint) and ``model.get_weights()`` see the trained model.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from edgekit.train.fit import History, _per_sample_loss, _targets, begin_training


class JaxTrainer:
    """Compiled epochs for one model/optimizer on the JAX backend.

    Args: as :class:`edgekit.train.fit.Trainer` (``jit_compile`` False runs the loop
    un-jitted, for debugging; default True).
    """

    def __init__(self, model, optimizer, loss: str, batch_size: int, capacity: int, n_features: int,
                 target_shape: tuple = (1,), val_capacity: int = 0, jit_compile: bool = True,
                 fixed_rows: bool = False):
        import jax
        import jax.numpy as jnp

        self.model, self.optimizer, self.loss, self.batch_size = model, optimizer, loss, batch_size
        self.capacity, self.val_capacity, self.fixed_rows = capacity, val_capacity, fixed_rows
        self.n_features = n_features
        per_sample = _per_sample_loss(loss)
        bs = batch_size
        optimizer.build(model.trainable_variables)
        self._sparse = loss == "sparse_categorical_crossentropy"
        self._target_shape = () if self._sparse else tuple(target_shape)

        def loss_and_updates(tv, ntv, xb, yb, w):
            y_pred, ntv, losses = model.stateless_call(tv, ntv, xb, training=True, return_losses=True)
            value = jnp.sum(per_sample(yb, y_pred) * w) / jnp.sum(w)
            if losses:
                value = value + sum(losses)
            return value, ntv

        grad_fn = jax.value_and_grad(loss_and_updates, has_aux=True)

        def one_epoch(state, x, y, n, epoch, seed):
            rows = jnp.arange(capacity + bs)
            u = jax.random.uniform(jax.random.fold_in(jax.random.key(seed), epoch), (capacity + bs,))
            # argsort of seeded uniforms; padding rows sort last (as the TensorFlow trainer does)
            perm = jnp.argsort(jnp.where(rows < n, u, 2.0 + rows.astype(jnp.float32)))
            nb = -(-capacity // bs) if fixed_rows else (n + bs - 1) // bs

            def body(b, carry):
                tv, ntv, ov, total = carry
                idx = jax.lax.dynamic_slice(perm, (b * bs,), (bs,))
                w = (b * bs + jnp.arange(bs) < n).astype(jnp.float32)
                (value, ntv), grads = grad_fn(tv, ntv, x[idx], y[idx], w)
                tv, ov = optimizer.stateless_apply(ov, grads, tv)
                return tv, ntv, ov, total + value * jnp.sum(w)

            tv, ntv, ov = state
            tv, ntv, ov, total = jax.lax.fori_loop(0, nb, body, (tv, ntv, ov, jnp.float32(0.0)))
            return (tv, ntv, ov), total / n.astype(jnp.float32)

        def run_epochs(state, x, y, n, start, count, seed):
            def body(e, carry):
                state, _ = carry
                return one_epoch(state, x, y, n, start + e, seed)

            return jax.lax.fori_loop(0, count, body, (state, jnp.float32(0.0)))

        def val_loss(tv, ntv, xv, yv, nv):
            y_pred, _, losses = model.stateless_call(tv, ntv, xv, training=False, return_losses=True)
            w = (jnp.arange(val_capacity) < nv).astype(jnp.float32)
            value = jnp.sum(per_sample(yv, y_pred) * w) / jnp.sum(w)
            return value + sum(losses) if losses else value

        wrap = jax.jit if jit_compile else (lambda f: f)
        self._run_epochs = wrap(run_epochs)
        self._val_loss = wrap(val_loss)

    def _padded(self, x, y, cap: int, extra: int):
        x = np.asarray(x, np.float32)
        y = _targets(y, self.loss)
        if len(x) > cap or len(x) == 0 or (extra and self.fixed_rows and len(x) != cap):
            raise ValueError(f"rows must be in 1..{cap}, got {len(x)}")
        xp = np.zeros((cap + extra, self.n_features), np.float32)
        yp = np.zeros((cap + extra, *self._target_shape), y.dtype)
        xp[: len(x)], yp[: len(y)] = x, y
        return xp, yp, np.int32(len(x))

    def _state(self):
        m, o = self.model, self.optimizer
        return ([v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables],
                [v.value for v in o.variables])

    def _store(self, state) -> None:
        m, o = self.model, self.optimizer
        for group, values in zip((m.trainable_variables, m.non_trainable_variables, o.variables), state):
            for var, value in zip(group, values):
                var.assign(value)

    def fit(self, x, y, *, epochs: int, seed: int = 0, validation=None, callbacks=None,
            progress: Callable | None = None, epochs_per_call: int | None = None) -> History:
        """Train for ``epochs`` on ``(x, y)``; see :func:`edgekit.train.fit.fit` for the arguments."""
        xp, yp, n = self._padded(x, y, self.capacity, self.batch_size)
        if validation is not None:
            xv, yv, nv = self._padded(validation[0], validation[1], self.val_capacity, 0)
        model = self.model
        callbacks, epochs_per_call, hist = begin_training(model, callbacks, validation, epochs, epochs_per_call)
        t0 = time.perf_counter()
        state = self._state()
        epoch = 0
        while epoch < epochs and not model.stop_training:
            count = min(epochs_per_call, epochs - epoch)
            # count is traced, not static: one compiled program for every chunk length
            state, value = self._run_epochs(state, xp, yp, n, np.int32(epoch), np.int32(count), np.int32(seed))
            value = float(value)
            epoch += count
            self._store(state)
            hist.history["loss"].append(value)
            hist.epoch_axis.append(epoch)
            logs = {"loss": value}
            if validation is not None:
                logs["val_loss"] = float(self._val_loss(state[0], state[1], xv, yv, nv))
                hist.history["val_loss"].append(logs["val_loss"])
            for cb in callbacks:
                cb.on_epoch_end(epoch - 1, logs)
            if progress is not None:
                progress(epoch, epochs, value)
            if callbacks:  # a callback may have changed the weights (restore_best_weights)
                state = self._state()
        for cb in callbacks:
            cb.on_train_end()
        hist.epochs_run = epoch
        hist.seconds = time.perf_counter() - t0
        return hist

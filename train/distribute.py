"""Data-parallel training: tf.distribute (Mirrored, MultiWorkerMirrored) and Keras' DataParallel on JAX.

Every distributed run trains with Keras' own ``model.fit`` inside the strategy (or under the
Keras distribution), which splits each *global* batch across the replicas, scales the loss
by the replica count and all-reduces (sums) the gradients. To make "same seed, same data"
checkable, edgekit orders the data itself: :func:`epoch_order` draws one permutation per
epoch from numpy's generator seeded with (seed, epoch), the epochs are laid end to end and
cut into global batches, and Keras takes them in that order (``shuffle=False``,
``steps_per_epoch``). Replica *r* of *N* gets rows ``[r*B/N, (r+1)*B/N)`` of each global
batch of B rows; the sum of their gradients is the single-device gradient up to float32
summation order. ``--distribute single`` runs exactly this on one device: the reference.

Constraints (checked up front by :func:`check_split`): an epoch must be whole batches and a
batch must divide by the replica count — Keras' DataParallel on JAX refuses anything else,
and tf.distribute would give the replicas unequal shares, whose mean of means is not the
single-device mean.

The worker process calls :func:`activate` before the example builds its model; the
example's :func:`edgekit.train.fit.fit` then lands in :func:`distributed_fit`.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Callable

import numpy as np

from edgekit.core.errors import UsageError
from edgekit.train.backends import Plan

#: The plan of this worker process; set by :func:`activate` (None: single-device fast path).
ACTIVE: Plan | None = None
_STRATEGY = None


def check_split(name: str, rows: int, batch_size: int, replicas: int) -> None:
    """Refuse a fit whose batches do not split evenly across ``replicas``.

    Raises:
        UsageError: the epoch is not whole batches, or a batch does not divide by the replicas.
    """
    bs = min(batch_size, rows)
    if rows % bs:
        raise UsageError(f"{name}: {rows} training rows are not whole batches of {bs} (a distributed "
                         "run needs equal batches)", got=f"{rows} rows, batch {bs}",
                         expected="an example whose rows divide by its batch size")
    if bs % replicas:
        raise UsageError(f"{name}: a batch of {bs} rows does not split across {replicas} replicas",
                         got=f"batch {bs}, --replicas {replicas}", expected=f"--replicas dividing {bs}")


def epoch_order(n: int, epochs: int, seed: int) -> np.ndarray:
    """Row indices for ``epochs`` epochs laid end to end: one seeded permutation per epoch."""
    return np.concatenate([np.random.default_rng([seed, e]).permutation(n) for e in range(epochs)])


def activate(plan: Plan) -> None:
    """Set this worker up for ``plan`` before any model exists (devices, strategy, distribution)."""
    global ACTIVE, _STRATEGY
    ACTIVE = plan
    if plan.distribute == "mirrored":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if len(gpus) >= plan.replicas:
            devices = [f"/gpu:{i}" for i in range(plan.replicas)]
        else:  # split the CPU into logical devices (must happen before TensorFlow initialises)
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(plan.replicas)])
            devices = [d.name for d in tf.config.list_logical_devices("CPU")][: plan.replicas]
        _STRATEGY = tf.distribute.MirroredStrategy(devices)
    elif plan.distribute == "multiworker":
        import tensorflow as tf

        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        _STRATEGY = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        patch_keras_20585()
    elif plan.distribute == "data-parallel":
        import jax
        import keras

        devices = jax.devices()
        if len(devices) < plan.replicas:
            raise UsageError("not enough JAX devices for --replicas", got=f"{len(devices)} devices",
                             expected=f"{plan.replicas} (XLA_FLAGS --xla_force_host_platform_device_count)")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices[: plan.replicas]))


def deactivate() -> None:
    """Forget the plan (a process that trains in-process again gets the fast path back)."""
    global ACTIVE, _STRATEGY
    ACTIVE, _STRATEGY = None, None


def scope():
    """The strategy's scope for building models and optimizers (a no-op without one)."""
    return _STRATEGY.scope() if _STRATEGY is not None else contextlib.nullcontext()


def task() -> tuple[int, int]:
    """(worker index, worker count) from TF_CONFIG; (0, 1) outside a multi-worker run."""
    cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
    if not cfg:
        return 0, 1
    return int(cfg["task"]["index"]), len(cfg["cluster"]["worker"])


def patch_keras_20585() -> None:
    """Work around keras-team/keras#20585: keras 3.15.1's ``fit()`` under MultiWorkerMirroredStrategy.

    Two places in Keras' TensorFlow trainer reduce across workers what cannot be reduced that way
    (both measured here with 2 workers on 127.0.0.1):

    1. Before the first step Keras builds the model from one batch, obtained by
       ``strategy.reduce("MEAN", per_replica_batch)``; the collective all-reduce cannot do that
       eagerly on a ``PerReplica`` of input data (``ValueError: Attempt to convert a value
       (PerReplica:{...}) ... to a Tensor``). The build needs only shapes and dtypes: this takes
       the local replica's batch.
    2. Every step's logs (the scalar loss) are averaged with ``strategy.reduce("MEAN", v, axis=0)``,
       and a scalar has no axis 0 (``Invalid reduction dimension 0 for input with 0 dimensions``):
       scalars are reduced with ``axis=None``.

    The one place edgekit changes Keras, applied only in a multi-worker process (idempotent);
    ``tests/train/test_distribute.py`` checks that plain Keras still fails and the patched one trains.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    cls = tf_trainer.TensorFlowTrainer
    if getattr(cls, "_edgekit_20585", False):
        return
    original_reduce = tf_trainer.reduce_per_replica

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        import tensorflow as tf
        from keras.src import tree

        if self._distribute_strategy is None:
            return
        local = self.distribute_strategy.experimental_local_results

        def first_local(v):
            return local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v

        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(first_local, next(it))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        from keras.src import tree

        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            def _reduce(v):
                scalar = all(t.shape.rank == 0 for t in strategy.experimental_local_results(v))
                return strategy.reduce("MEAN", v, axis=None if scalar else 0)

            return tree.map_structure(_reduce, values)
        return original_reduce(values, strategy, reduction)

    cls._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    cls._edgekit_20585 = True


def distributed_fit(model, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, optimizer, loss: str,
                    seed: int = 0, progress: Callable[[int, int, float], None] | None = None, name: str = "fit"):
    """Train ``model`` with Keras' ``fit`` on the pre-ordered global batches of :func:`epoch_order`.

    Args: as :func:`edgekit.train.fit.fit` (``name`` labels errors; default ``fit``).

    Returns:
        An :class:`edgekit.train.fit.History`.
    """
    import keras

    from edgekit.train.fit import History, _targets

    plan = ACTIVE
    x = np.asarray(x, np.float32)
    yt = _targets(y, loss)
    n = len(x)
    bs = min(batch_size, n)
    check_split(name, n, bs, plan.n_replicas if plan else 1)
    order = epoch_order(n, epochs, seed)
    xs, ys = x[order], yt[order]
    steps = n // bs
    # one step per execution under tf.distribute: steps_per_execution > 1 fails inside MirroredStrategy
    # (keras 3.15.1: "You must feed a value for placeholder tensor ... while/cond/Placeholder")
    spe = 1 if keras.backend.backend() == "tensorflow" and plan and plan.n_replicas > 1 else steps
    model.compile(optimizer=optimizer, loss=loss, steps_per_execution=spe)
    hist = History()

    def on_epoch_end(epoch, logs):
        hist.history["loss"].append(float(logs["loss"]))
        hist.epoch_axis.append(epoch + 1)
        if progress is not None:
            progress(epoch + 1, epochs, float(logs["loss"]))

    cb = [keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(bs)
        opts = tf.data.Options()
        # Every worker builds the same batches; DATA sharding hands each its slice of each one.
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        opts.deterministic = True
        model.fit(data.with_options(opts), epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=cb)
    else:
        model.fit(xs, ys, batch_size=bs, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
                  callbacks=cb)
    hist.epochs_run = epochs
    return hist

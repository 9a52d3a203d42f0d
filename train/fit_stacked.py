"""Several Dense networks on the same rows, trained as one stacked network (the moons sweep).

The tutorial's sweep fits the same ``Dense(h, tanh, L2) -> Dense(2, softmax)`` network for seven
hidden sizes on the same 160 rows with the same seed, so the seven fits see the same batches in
the same order. :func:`fit_together` trains them as the members of one network whose layer
``l`` holds a ``[M, in, out]`` kernel, zero-padded to the widest member, each member's padded
units masked to zero: a padded weight gets no gradient and no L2 (it stays exactly 0, and Adam
moves a weight with zero gradient by exactly 0), so each member computes its own network. One
:class:`edgekit.train.fit.Trainer` with ``members`` minimises the sum of the members' losses (each
its own mean loss plus its own L2); members share no weight, so each gets its own gradient, and
the optimizer being elementwise (SGD, Adam) each gets its own update. Only floating-point
summation order differs from the members' own fits (``tests/train/test_fit_together.py``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgekit.train.fit import History, Trainer, _targets, fit


def _spec(models: list) -> list[tuple[str, float, list[int]]] | None:
    """``[(activation, l2, [units per member])]`` per Dense layer; None when the models cannot stack."""
    import keras

    layers_per_model = []
    for m in models:
        if not isinstance(m, keras.Sequential) or not all(isinstance(layer, keras.layers.Dense) for layer in m.layers):
            return None
        layers_per_model.append(m.layers)
    depth = {len(ls) for ls in layers_per_model}
    if len(depth) != 1:
        return None
    spec = []
    for i in range(depth.pop()):
        names = [keras.activations.serialize(ls[i].activation) for ls in layers_per_model]
        if not all(isinstance(a, str) for a in names):
            return None
        acts = set(names)
        regs = []
        for ls in layers_per_model:
            r = ls[i].kernel_regularizer
            if r is None:
                regs.append(0.0)
            elif isinstance(r, keras.regularizers.L2) and ls[i].bias_regularizer is None:
                regs.append(float(r.l2))
            else:
                return None
            if ls[i].activity_regularizer is not None or not ls[i].use_bias:
                return None
        if len(acts) != 1 or len(set(regs)) != 1:
            return None
        spec.append((acts.pop(), regs[0], [int(ls[i].units) for ls in layers_per_model]))
    if len(set(spec[-1][2])) != 1:  # the members' outputs must stack
        return None
    return spec


def _stacked_model(models: list, spec):
    """The Keras model of the stacked network, its output ``[B, M, units]``, starting from ``models``' weights."""
    import keras
    from keras import ops

    m = len(models)
    width = int(models[0].inputs[0].shape[-1])
    kernels, biases, masks = [], [], []
    fan_in = [width] * m
    for i, (_, _, units) in enumerate(spec):
        k = np.zeros((m, max(fan_in), max(units)), np.float32)
        b = np.zeros((m, max(units)), np.float32)
        for j, model in enumerate(models):
            w, bias = model.layers[i].get_weights()
            k[j, : fan_in[j], : units[j]], b[j, : units[j]] = w, bias
        kernels.append(k)
        biases.append(b)
        masks.append((np.arange(max(units))[None, :] < np.array(units)[:, None]).astype(np.float32))
        fan_in = units

    class StackedDense(keras.layers.Layer):
        def build(self, input_shape):
            self.ks = [self.add_weight(shape=k.shape, initializer=keras.initializers.Constant(k), name=f"k{i}")
                       for i, k in enumerate(kernels)]
            self.bs = [self.add_weight(shape=b.shape, initializer=keras.initializers.Constant(b), name=f"b{i}")
                       for i, b in enumerate(biases)]

        def call(self, x):
            h = ops.einsum("bi,mio->mbo", x, self.ks[0]) + self.bs[0][:, None, :]
            for i, (act, _, _) in enumerate(spec):
                if i:
                    h = ops.matmul(h, self.ks[i]) + self.bs[i][:, None, :]
                h = keras.activations.get(act)(h) * masks[i][:, None, :]
            return ops.transpose(h, (1, 0, 2))

        def member_regularization(self):
            total = ops.zeros((m,))
            for k, (_, l2, _) in zip(self.ks, spec):
                if l2:
                    total = total + l2 * ops.sum(ops.square(k), axis=(1, 2))
            return total

    layer = StackedDense(name="stacked_dense")
    net = keras.Sequential([keras.Input((width,)), layer], name="stacked")
    return net, layer


def fit_together(models: list, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, optimizer: Callable,
                 loss: str, seed: int = 0, progress: Callable[[int, int, float], None] | None = None,
                 jit_compile: bool = True) -> list[History]:
    """:func:`edgekit.train.fit.fit` for several models on the same rows at once; the models are trained in place.

    Each model gets what its own ``fit(model, x, y, ..., seed=seed)`` would: the same shuffles and
    batches (one seed), its own loss and L2 penalty and its own optimizer updates. The models must
    be Dense-only ``keras.Sequential`` networks of one depth that differ only in their hidden
    widths (same activations, L2 factors and output width); otherwise, on a backend other than
    TensorFlow, or under a distribution strategy, they are fitted one after another.

    Args:
        models: built Keras models with the same input and output shapes.
        optimizer: a zero-argument callable returning a fresh Keras optimizer (elementwise: SGD, Adam, ...).
        Others: as :func:`edgekit.train.fit.fit` (no validation or callbacks).

    Returns:
        One :class:`History` per model, in order.
    """
    import keras

    from edgekit.train import distribute

    distributed = distribute.ACTIVE is not None and distribute.ACTIVE.distribute is not None
    spec = _spec(models) if len(models) > 1 else None
    if keras.backend.backend() != "tensorflow" or distributed or spec is None:
        return [fit(m, x, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer(), loss=loss, seed=seed,
                    progress=progress, jit_compile=jit_compile) for m in models]
    x = np.asarray(x, np.float32)
    yt = _targets(y, loss)
    net, layer = _stacked_model(models, spec)
    trainer = Trainer(net, optimizer(), loss, min(batch_size, len(x)), len(x), x.shape[1], target_shape=yt.shape[1:],
                      jit_compile=jit_compile, fixed_rows=True, members=len(models),
                      member_regularization=layer.member_regularization)
    both = trainer.fit(x, yt, epochs=epochs, seed=seed, progress=progress)
    ks, bs = [k.numpy() for k in layer.ks], [b.numpy() for b in layer.bs]
    fan_in = [x.shape[1]] * len(models)
    for i, (_, _, units) in enumerate(spec):
        for j, model in enumerate(models):
            model.layers[i].set_weights([ks[i][j, : fan_in[j], : units[j]], bs[i][j, : units[j]]])
        fan_in = units
    return [History(history={"loss": [v[j] for v in both.history["loss"]]}, epoch_axis=list(both.epoch_axis),
                    epochs_run=both.epochs_run, seconds=both.seconds) for j in range(len(models))]

"""Example 3: make_moons with a hidden-size sweep.

make_moons(200, noise=0.2, seed 0), 80/20 split (random_state 0), Dense(h, tanh,
L2 0.01) -> Dense(2, softmax), Adam 0.01, 2000 epochs, batch 32 — as the tutorial
writes it — for h in {1, 2, 3, 4, 5, 20, 50}, each its own model ``moons_h<h>``
(``moons_h3`` is the tutorial's headline model). With the L2 penalty every hidden
size draws a nearly straight boundary, which the sweep figure makes visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.train.common import TrainContext, TrainResult, predict, seed_everything
from edgekit.train.registry import group_hook, group_prefit, register

HIDDEN_SIZES = (1, 2, 3, 4, 5, 20, 50)
EPOCHS = 2000
QUICK_EPOCHS = 20
LEARNING_RATE = 0.01
L2 = 0.01
# (hidden, seed, epochs) -> (trained weights, History) from the group prefit, taken by train_moons
_PREFIT: dict[tuple[int, int, int], tuple[list, object]] = {}


def data():
    from sklearn.datasets import make_moons
    from sklearn.model_selection import train_test_split

    x, y = make_moons(200, noise=0.20, random_state=0)
    x = x.astype(np.float32)
    return train_test_split(x, y, test_size=0.2, random_state=0)


def build_model(hidden: int):
    import keras

    return keras.Sequential([
        keras.Input((2,), name="features"),
        keras.layers.Dense(hidden, activation="tanh", kernel_regularizer=keras.regularizers.l2(L2),
                           name="hidden"),
        keras.layers.Dense(2, activation="softmax", name="probabilities"),
    ], name=f"moons_h{hidden}")


def train_moons(ctx: TrainContext, hidden: int) -> TrainResult:
    import keras

    from edgekit.train.fit import fit
    from edgekit.train.plots import decision_boundary, training_loss

    x_train, x_test, y_train, y_test = data()
    seed_everything(ctx.seed)
    model = build_model(hidden)
    epochs = ctx.epochs(EPOCHS, quick=QUICK_EPOCHS)
    prefit = _PREFIT.pop((hidden, ctx.seed, epochs), None)
    if prefit is not None:  # trained together with the sweep's other sizes (same init, batches, math)
        model.set_weights(prefit[0])
        hist = prefit[1]
    else:
        hist = fit(model, x_train, y_train, epochs=epochs, batch_size=32,
                   optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="sparse_categorical_crossentropy",
                   seed=ctx.seed, progress=ctx.progress)
    acc_test = float(np.mean(np.argmax(predict(model, x_test), 1) == y_test))
    acc_train = float(np.mean(np.argmax(predict(model, x_train), 1) == y_train))
    x_all = np.concatenate([x_train, x_test])
    y_all = np.concatenate([y_train, y_test])
    decision_boundary(ctx.dir / "decision_boundary.png", model, x_all, y_all,
                      f"Hidden layer size {hidden} (test acc {acc_test:.3f})")
    training_loss(ctx.dir / "training_loss.png", hist.history, hist.epoch_axis, f"moons h={hidden}: loss")
    return TrainResult(
        model=model, task="multiclass", labels=["0", "1"],
        metrics={"accuracy": acc_test, "train_accuracy": acc_train, "final_loss": hist.history["loss"][-1]},
        headline=("test accuracy", acc_test),
        hyperparams={"hidden": hidden, "activation": "tanh", "l2": L2, "optimizer": "adam",
                     "learning_rate": LEARNING_RATE, "epochs": epochs, "batch_size": 32,
                     "trained": "together with the sweep's other sizes, one stacked network (fit_together)"
                                if prefit is not None else "alone",
                     "data": "make_moons(200, noise=0.2, random_state=0), 80/20 split random_state=0"},
        golden_x=x_test, y_true=y_test, calib_x=x_train,
    )


def _register(hidden: int) -> None:
    quality = "test accuracy >= 0.80" if hidden >= 3 else "none (under-sized on purpose)"

    @register(f"moons_h{hidden}", "multiclass", f"make_moons, Dense({hidden}, tanh, L2) -> softmax",
              params={"hidden": hidden}, group="moons", quality=quality, cost=1.0,
              passes=(lambda m: m["accuracy"] >= 0.80) if hidden >= 3 else None, fit_rows=160)
    def _train(ctx: TrainContext, hidden: int) -> TrainResult:
        return train_moons(ctx, hidden)


for _h in HIDDEN_SIZES:
    _register(_h)


@group_prefit("moons", cost=5.0)  # the stacked fit ~3 s and the sweep figure ~2 s
def prefit(examples, seed: int, quick: bool, progress) -> None:
    """Train the selected sizes' fits together (:func:`edgekit.train.fit_stacked.fit_together`), for train_moons.

    Each model is built after the same ``seed_everything(seed)`` as when it trains alone, so each
    starts from the same weights, sees the same batches and gets the same Adam updates.
    """
    import keras

    from edgekit.train.fit_stacked import fit_together

    x_train, _, y_train, _ = data()
    epochs = min(EPOCHS, QUICK_EPOCHS) if quick else EPOCHS
    hiddens = [ex.params["hidden"] for ex in examples]
    models = []
    for h in hiddens:
        seed_everything(seed)
        models.append(build_model(h))
    hists = fit_together(models, x_train, y_train, epochs=epochs, batch_size=32,
                         optimizer=lambda: keras.optimizers.Adam(LEARNING_RATE),
                         loss="sparse_categorical_crossentropy", seed=seed, progress=progress)
    for h, m, hist in zip(hiddens, models, hists, strict=True):
        _PREFIT[(h, seed, epochs)] = (m.get_weights(), hist)


@group_hook("moons")
def sweep_figure(out: Path, names: list[str]) -> Path:
    """The tutorial's grid of decision boundaries, one panel per trained hidden size.

    Runs in the training workers' parent, which has not imported Keras: the models are evaluated
    by :class:`edgekit.train.dense_numpy.DenseStack` (numpy), not loaded through Keras.
    """
    from edgekit.train.dense_numpy import DenseStack
    from edgekit.train.plots import sweep_grid

    x_train, x_test, y_train, y_test = data()
    panels = []
    for name in names:
        panels.append((f"Hidden layer size {name.split('_h')[-1]}", DenseStack(out / name / "model.keras")))
    path = out / "moons_sweep.png"
    sweep_grid(path, panels, np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test]))
    return path

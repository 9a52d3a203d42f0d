"""Example 2: linear regression on five points, against numpy's least squares.

The tutorial fits Dense(1) with Adam at its default learning rate (0.001) for 100
epochs and stops at slope ~0.10 / intercept ~0.10, far from lstsq's 0.70 / 0.70:
Adam's step is ~lr per update, so 100 updates move each weight by at most ~0.1.
We raise the learning rate to 0.1 and run 1000 full-batch epochs; the fit then
matches lstsq to ~1e-6 (the quality bar is 0.02).
"""

from __future__ import annotations

import numpy as np

from edgekit.train.common import TrainContext, TrainResult, predict, seed_everything
from edgekit.train.registry import register

X = np.array([[1], [2], [3], [4], [5]], dtype=np.float32)
Y = np.array([1, 3, 3, 2, 5], dtype=np.float32)
LEARNING_RATE = 0.1
EPOCHS = 1000


def lstsq(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a = np.vstack([x.ravel(), np.ones(len(x))]).T
    m, c = np.linalg.lstsq(a, y, rcond=None)[0]
    return float(m), float(c)


@register("linear_regression", "regression", "Dense(1) on five points vs numpy lstsq",
          quality="slope and intercept within 0.02 of lstsq",
          passes=lambda m: m["slope_error"] <= 0.02 and m["intercept_error"] <= 0.02, fit_rows=5)
def linear_regression(ctx: TrainContext) -> TrainResult:
    import keras

    from edgekit.train.fit import fit
    from edgekit.train.plots import predicted_vs_actual, training_loss

    seed_everything(ctx.seed)
    model = keras.Sequential([keras.Input((1,), name="features"),
                              keras.layers.Dense(1, kernel_initializer="random_normal", name="line")],
                             name="linear_regression")
    epochs = ctx.epochs(EPOCHS, quick=20)
    hist = fit(model, X, Y, epochs=epochs, batch_size=32, optimizer=keras.optimizers.Adam(LEARNING_RATE),
               loss="mse", seed=ctx.seed, progress=ctx.progress)
    w, b = model.layers[0].get_weights()
    slope, intercept = float(w[0, 0]), float(b[0])
    m, c = lstsq(X, Y)
    pred = predict(model, X).ravel()
    mse = float(np.mean((pred - Y) ** 2))
    r2 = float(1 - np.sum((Y - pred) ** 2) / np.sum((Y - Y.mean()) ** 2))
    predicted_vs_actual(ctx.dir / "predicted_vs_actual.png", Y, pred, "Linear regression: predicted vs actual")
    training_loss(ctx.dir / "training_loss.png", hist.history, hist.epoch_axis, "Linear regression: loss")
    return TrainResult(
        model=model, task="regression",
        metrics={"slope": slope, "intercept": intercept, "lstsq_slope": m, "lstsq_intercept": c,
                 "slope_error": abs(slope - m), "intercept_error": abs(intercept - c), "mse": mse, "r2": r2},
        headline=("slope error vs lstsq", abs(slope - m)),
        hyperparams={"architecture": "Dense(1, linear)", "optimizer": "adam", "learning_rate": LEARNING_RATE,
                     "epochs": epochs, "batch_size": 32, "kernel_initializer": "random_normal"},
        golden_x=X, y_true=Y, calib_x=X,
    )

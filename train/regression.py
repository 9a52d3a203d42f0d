"""Examples 4-6: make_regression with a linear model, a deep dropout network and a 64-32-16 MLP.

Data: make_regression(1000 rows, 10 features, noise 0.1, random_state 0), 80/20
split (random_state 42), X and y standardised with StandardScaler fitted on the
training split, as in the tutorial. **Raw in, raw out**: the network trains on
scaled data, and the served model wraps it as
``Normalization(mean_X, var_X) -> network -> Rescaling(std_y, mean_y)`` so a device
feeds raw features and reads raw-scale targets, with no scaler of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.train.common import TrainContext, TrainResult, predict, seed_everything
from edgekit.train.registry import register

N_FEATURES = 10


@dataclass
class Data:
    x_train: np.ndarray   # raw
    x_test: np.ndarray
    y_train: np.ndarray   # raw, (n, 1)
    y_test: np.ndarray
    scaler_x: object
    scaler_y: object

    @property
    def xs_train(self):
        return self.scaler_x.transform(self.x_train).astype(np.float32)

    @property
    def ys_train(self):
        return self.scaler_y.transform(self.y_train).astype(np.float32)


def data() -> Data:
    from sklearn.datasets import make_regression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = make_regression(n_samples=1000, n_features=N_FEATURES, noise=0.1, random_state=0)
    x, y = x.astype(np.float32), y.reshape(-1, 1).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
    return Data(x_train, x_test, y_train, y_test,
                StandardScaler().fit(x_train), StandardScaler().fit(y_train))


def serving_model(net, d: Data, name: str):
    """Wrap ``net`` (scaled in/out) as a raw-in, raw-out model: the scalers become layers."""
    import keras

    inp = keras.Input((N_FEATURES,), name="features")
    h = keras.layers.Normalization(mean=d.scaler_x.mean_, variance=d.scaler_x.var_, name="scale_x")(inp)
    h = net(h)
    out = keras.layers.Rescaling(scale=float(d.scaler_y.scale_[0]), offset=float(d.scaler_y.mean_[0]),
                                 name="unscale_y")(h)
    model = keras.Model(inp, out, name=name)
    model(d.x_test[:1])
    return model


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    y_true, y_pred = np.ravel(y_true).astype(np.float64), np.ravel(y_pred).astype(np.float64)
    mse = float(np.mean((y_true - y_pred) ** 2))
    r2 = float(1 - np.sum((y_true - y_pred) ** 2) / np.sum((y_true - y_true.mean()) ** 2))
    return {"mse": mse, "r2": r2}


def finish(ctx: TrainContext, net, d: Data, name: str, hist, hyper: dict, extra: dict | None = None) -> TrainResult:
    """Wrap, evaluate on raw scale (test and train), plot, and build the result."""
    from edgekit.train.plots import predicted_vs_actual, training_loss

    model = serving_model(net, d, name)
    test = regression_metrics(d.y_test, predict(model, d.x_test))
    train = regression_metrics(d.y_train, predict(model, d.x_train))
    predicted_vs_actual(ctx.dir / "predicted_vs_actual.png", d.y_test, predict(model, d.x_test),
                        f"{name}: predicted vs actual (test R² {test['r2']:.4f})")
    if hist is not None:
        training_loss(ctx.dir / "training_loss.png", hist.history, hist.epoch_axis, f"{name}: loss (scaled)")
    return TrainResult(
        model=model, task="regression",
        metrics={"test_mse": test["mse"], "test_r2": test["r2"], "train_mse": train["mse"],
                 "train_r2": train["r2"], "r2": test["r2"], "mse": test["mse"]},
        headline=("test R²", test["r2"]),
        hyperparams={**hyper, "data": "make_regression(1000, 10, noise=0.1, random_state=0), "
                                      "80/20 split random_state=42, StandardScaler on X and y"},
        golden_x=d.x_test, y_true=d.y_test, calib_x=d.x_train, extra=extra or {})


@register("regression_linear", "regression", "make_regression: Dense(1) linear, SGD 0.01",
          quality="test R² > 0.99", passes=lambda m: m["test_r2"] > 0.99, fit_rows=800)
def regression_linear(ctx: TrainContext) -> TrainResult:
    import keras

    from edgekit.train.fit import fit

    d = data()
    seed_everything(ctx.seed)
    net = keras.Sequential([keras.Input((N_FEATURES,)), keras.layers.Dense(1, activation="linear")],
                           name="linear_net")
    epochs = ctx.epochs(1000)
    hist = fit(net, d.xs_train, d.ys_train, epochs=epochs, batch_size=32,
               optimizer=keras.optimizers.SGD(0.01), loss="mse", seed=ctx.seed, progress=ctx.progress)
    return finish(ctx, net, d, "regression_linear", hist,
                  {"architecture": "Dense(1, linear)", "optimizer": "sgd", "learning_rate": 0.01,
                   "epochs": epochs, "batch_size": 32})


def deep_net(dropout: float = 0.2, name: str = "deep_net"):
    """The tutorial's 128σ -> Dropout -> 64 relu -> Dropout -> 32σ -> 16 relu -> 8σ -> 5 relu -> 1."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((N_FEATURES,)),
        layers.Dense(128, activation="sigmoid"), layers.Dropout(dropout),
        layers.Dense(64, activation="relu"), layers.Dropout(dropout),
        layers.Dense(32, activation="sigmoid"), layers.Dense(16, activation="relu"),
        layers.Dense(8, activation="sigmoid"), layers.Dense(5, activation="relu"),
        layers.Dense(1, activation="linear"),
    ], name=name)


@register("regression_deep", "regression", "make_regression: deep dropout network, SGD 0.05",
          quality="test R² > 0.95", cost=9.0, passes=lambda m: m["test_r2"] > 0.95, fit_rows=800)
def regression_deep(ctx: TrainContext) -> TrainResult:
    import keras

    from edgekit.train.fit import fit

    d = data()
    seed_everything(ctx.seed)
    net = deep_net()
    lines: list[str] = []
    net.summary(print_fn=lambda s, **_: lines.append(s))
    (ctx.dir / "model_summary.txt").write_text("\n".join(lines) + "\n")
    epochs = ctx.epochs(1000)
    hist = fit(net, d.xs_train, d.ys_train, epochs=epochs, batch_size=32,
               optimizer=keras.optimizers.SGD(0.05), loss="mse", seed=ctx.seed, progress=ctx.progress)
    acts = predict(net.layers[-2], _penultimate(net, d.xs_train))
    dead = int(np.sum(np.all(acts <= 0, axis=0)))
    return finish(ctx, net, d, "regression_deep", hist,
                  {"architecture": "128σ-Drop0.2-64relu-Drop0.2-32σ-16relu-8σ-5relu-1", "optimizer": "sgd",
                   "learning_rate": 0.05, "epochs": epochs, "batch_size": 32},
                  extra={"dead_relu_units_last_hidden": dead, "last_hidden_units": int(acts.shape[1])})


def _penultimate(net, x):
    """Activations entering the 5-unit relu layer."""
    h = x
    for layer in net.layers[:-2]:
        h = layer(h, training=False)
    return h


@register("regression_mlp", "regression", "make_regression: 64-32-16 relu MLP, Adam",
          quality="test R² > 0.9", passes=lambda m: m["test_r2"] > 0.9, fit_rows=800)
def regression_mlp(ctx: TrainContext) -> TrainResult:
    import keras
    from keras import layers

    from edgekit.train.fit import fit

    d = data()
    seed_everything(ctx.seed)
    net = keras.Sequential([keras.Input((N_FEATURES,)), layers.Dense(64, activation="relu"),
                            layers.Dense(32, activation="relu"), layers.Dense(16, activation="relu"),
                            layers.Dense(1, activation="linear")], name="mlp_net")
    epochs = ctx.epochs(100)
    hist = fit(net, d.xs_train, d.ys_train, epochs=epochs, batch_size=32, optimizer=keras.optimizers.Adam(),
               loss="mse", seed=ctx.seed, progress=ctx.progress)
    return finish(ctx, net, d, "regression_mlp", hist,
                  {"architecture": "64relu-32relu-16relu-1", "optimizer": "adam", "learning_rate": 0.001,
                   "epochs": epochs, "batch_size": 32})

"""Example 5b: the tutorial's grid search, repaired.

GridSearchCV(cv=3) over learning rate {0.01, 0.05, 0.1} x dropout {0.2, 0.5} x
batch {16, 32}, 100 epochs, with scikeras' KerasRegressor as the scikit-learn
wrapper (``tensorflow.keras.wrappers`` is gone). What the tutorial got wrong and
what we do instead:

- ``create_model`` ignored ``dropout_rate`` and had no output layer (a Dense(5, relu)
  output: every CV score NaN): we use the rate and end with Dense(1, linear);
- callbacks passed to ``fit`` are ignored by scikeras: EarlyStopping(val_loss,
  patience 10, restore best weights) is given to the wrapper's constructor, so each
  CV clone gets its own copy;
- its validation data was the test set: each fit holds out the last 20% of its
  own training fold instead;
- one checkpoint path shared by every clone ended up holding the last fit, not the
  best: only the final refit of the best parameters checkpoints (ModelCheckpoint
  on val_loss, save_best_only), and that checkpoint is reloaded, evaluated and exported.

Fits run through :func:`edgekit.train.fit.fit` (same math as ``model.fit``, compiled epochs).
"""

from __future__ import annotations

import numpy as np

from edgekit.train.common import TrainContext, TrainResult, predict, seed_everything
from edgekit.train.registry import register

PARAM_GRID = {
    "model__learning_rate": [0.01, 0.05, 0.1],
    "model__dropout_rate": [0.2, 0.5],
    "batch_size": [16, 32],
    "epochs": [100],
}
QUICK_GRID = {"model__learning_rate": [0.05], "model__dropout_rate": [0.2, 0.5], "batch_size": [32],
              "epochs": [3]}
VALIDATION_SPLIT = 0.2
#: the final refit's rows (the 800 training rows: 640 to fit, 160 to validate) bound every fit's;
#: the CV folds' are smaller. Tight bounds keep the per-epoch shuffle and validation pass small.
FIT_ROWS = 800
VAL_CAPACITY = int(round(FIT_ROWS * VALIDATION_SPLIT))
CAPACITY = FIT_ROWS - VAL_CAPACITY
PATIENCE = 10


def create_model(learning_rate: float = 0.01, dropout_rate: float = 0.2):
    import keras

    from edgekit.train.regression import deep_net

    model = deep_net(dropout=dropout_rate, name="grid_net")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mean_squared_error")
    return model


# The compiled trainers of the grid's fits. On TensorFlow ONE program serves all 37 fits: the
# dropout rate is a variable read by the trainer's own dropout layers and the batch size a
# runtime value (``dynamic_batch``: a 32-wide window, the rows past the fit's batch masked), so
# XLA compiles once instead of once per (dropout, batch size) pair (~4 s each on this machine).
# Other backends keep one trainer per pair.
_TRAINERS: dict = {}
MAX_BATCH = max(PARAM_GRID["batch_size"])


class _Rate:
    """The shared dropout rate (and draw counter) of the single TensorFlow trainer's dropout layers.

    A plain object, so Keras' tracker does not count its variables as the model's weights.
    """

    def __init__(self):
        import tensorflow as tf

        self.rate = tf.Variable(0.0, trainable=False, name="grid_dropout_rate")
        self.draws = tf.Variable(0, trainable=False, dtype=tf.int32, name="grid_dropout_draws")


def _rate_dropout_net(rate: _Rate):
    """:func:`deep_net` with its Dropout layers reading ``rate.rate`` (the same weights, in the same order).

    Inverted dropout as Keras computes it: keep a unit when a seeded uniform is >= rate, scale the
    kept ones by 1 / (1 - rate); each call draws a fresh seed from ``rate.draws``.
    """
    import keras
    import tensorflow as tf

    from edgekit.train.regression import N_FEATURES, deep_net

    class RateDropout(keras.layers.Layer):
        def __init__(self, index: int, **kwargs):
            super().__init__(**kwargs)
            self._index, self._holder = index, [rate]  # a list: not a tracked attribute

        def call(self, x, training=False):
            if not training:
                return x
            r = self._holder[0]
            n = r.draws.assign_add(1)
            u = tf.random.stateless_uniform(tf.shape(x), seed=tf.stack([n, tf.constant(self._index)]))
            return tf.where(u >= r.rate, x / (1.0 - r.rate), tf.zeros_like(x))

    template = deep_net(0.5, name="grid_trainer")
    drops = iter(range(1, 100))
    layers = [RateDropout(next(drops)) if isinstance(layer, keras.layers.Dropout) else layer
              for layer in template.layers]
    return keras.Sequential([keras.Input((N_FEATURES,)), *layers], name="grid_trainer")


def _fast_get_weights(model) -> None:
    """``model.get_weights()`` in one compiled call instead of one eager read per variable.

    EarlyStopping(restore_best_weights=True) snapshots the weights at every improving epoch:
    over the grid's ~2500 epochs that was ~20 000 eager reads. Same arrays, same order.
    """
    import tensorflow as tf

    variables = list(model.weights)
    read_all = tf.function(lambda: [tf.identity(v.value) for v in variables])
    object.__setattr__(model, "get_weights", lambda: [t.numpy() for t in read_all()])


def _trainer(dropout: float, batch_size: int, capacity: int, val_capacity: int):
    """The compiled trainer for a fit, set to ``dropout`` (TensorFlow: the one shared trainer)."""
    import keras

    from edgekit.train.fit import make_trainer
    from edgekit.train.regression import N_FEATURES, deep_net

    if keras.backend.backend() == "tensorflow":
        key: tuple = ("shared", capacity, val_capacity)
        if key not in _TRAINERS:
            rate = _Rate()
            tr = make_trainer(_rate_dropout_net(rate), keras.optimizers.SGD(0.01), "mse", MAX_BATCH, capacity,
                              N_FEATURES, val_capacity=val_capacity, dynamic_batch=True)
            tr.grid_rate = rate
            _fast_get_weights(tr.model)
            _TRAINERS[key] = tr
        tr = _TRAINERS[key]
        tr.grid_rate.rate.assign(dropout)
        return tr
    key = (dropout, batch_size, capacity, val_capacity)
    if key not in _TRAINERS:
        _TRAINERS[key] = make_trainer(deep_net(dropout, name="grid_trainer"), keras.optimizers.SGD(0.01), "mse",
                                      batch_size, capacity, N_FEATURES, val_capacity=val_capacity)
    return _TRAINERS[key]


def _plain_checkpoint(path: str, twin_params: dict):
    """``ModelCheckpoint(path, monitor="val_loss", save_best_only=True)`` that saves a plain :func:`create_model`.

    The fit trains the shared trainer's model, whose dropout layers read a variable; each epoch its
    weights are copied into a twin built by ``create_model(**twin_params)``, which is what gets saved,
    so the checkpoint holds standard Keras layers only and loads anywhere.
    """
    import keras

    class PlainModelCheckpoint(keras.callbacks.ModelCheckpoint):
        def set_model(self, model):
            self._source = model
            super().set_model(create_model(**twin_params))

        def on_epoch_end(self, epoch, logs=None):
            self.model.set_weights(self._source.get_weights())
            super().on_epoch_end(epoch, logs)

    return PlainModelCheckpoint(path, monitor="val_loss", save_best_only=True)


def _wrapper_class():
    from scikeras.wrappers import KerasRegressor

    class FastKerasRegressor(KerasRegressor):
        """KerasRegressor whose fits run a shared compiled :class:`edgekit.train.fit.Trainer`.

        The scikeras-built model supplies the fresh initial weights and receives the
        trained ones; validation is the last 20% of the fit's own training rows.
        """

        def _fit_keras_model(self, X, y, sample_weight, warm_start, epochs, initial_epoch, **kwargs):
            params = self.get_params()
            n_val = int(round(len(X) * VALIDATION_SPLIT))
            xt, yt, xv, yv = X[:-n_val], y[:-n_val], X[-n_val:], y[-n_val:]
            tr = _trainer(params["model__dropout_rate"], self.batch_size, CAPACITY, VAL_CAPACITY)
            tr.model.set_weights(self.model_.get_weights())
            for v in tr.optimizer.variables:
                v.assign(v.numpy() * 0)
            tr.optimizer.learning_rate = params["model__learning_rate"]
            hist = tr.fit(xt, yt, epochs=epochs, seed=self.random_state or 0, validation=(xv, yv),
                          callbacks=self._fit_callbacks,
                          **({"batch_size": self.batch_size} if getattr(tr, "dynamic_batch", False) else {}))
            self.model_.set_weights(tr.model.get_weights())
            self.history_ = dict(hist.history)
            self.epochs_run_ = hist.epochs_run

        def _predict_raw(self, X, **kwargs):
            """A direct model call: ``model.predict`` would trace a new predict function per fit."""
            if not self.initialized_:
                return super()._predict_raw(X, **kwargs)  # raises NotFittedError
            X, _ = self._validate_data(X=X, y=None)
            X = self.feature_encoder_.transform(X)
            return predict(self.model_, X)

    return FastKerasRegressor


@register("regression_grid", "regression", "make_regression: grid-searched deep network (scikeras)",
          quality="test R² > 0.95", cost=30.0, passes=lambda m: m["test_r2"] > 0.95,
          not_distributable="a grid search: 37 scikeras fits with validation and early stopping")
def regression_grid(ctx: TrainContext) -> TrainResult:
    import keras
    from sklearn.model_selection import GridSearchCV

    from edgekit.train.regression import data, finish

    d = data()
    seed_everything(ctx.seed)
    wrapper = _wrapper_class()
    early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE, restore_best_weights=True)
    est = wrapper(model=create_model, loss="mean_squared_error", callbacks=[early], verbose=0,
                  random_state=ctx.seed)
    grid_spec = QUICK_GRID if ctx.quick else PARAM_GRID
    grid = GridSearchCV(est, grid_spec, cv=2 if ctx.quick else 3, refit=False, error_score="raise")
    n_cand = int(np.prod([len(v) for v in grid_spec.values()]))
    done = [0]
    xs, ys = d.xs_train, d.ys_train.ravel()

    grid.fit(xs, ys)
    done[0] = n_cand
    best = grid.best_params_
    results = [{"params": {k.replace("model__", ""): v for k, v in p.items()},
                "mean_r2": float(m), "std_r2": float(s), "rank": int(r)}
               for p, m, s, r in zip(grid.cv_results_["params"], grid.cv_results_["mean_test_score"],
                                     grid.cv_results_["std_test_score"], grid.cv_results_["rank_test_score"])]
    if ctx.log:
        ctx.log(f"  grid: best {best} mean R² {grid.best_score_:.4f} over {n_cand} candidates")

    # Final refit of the best parameters, checkpointing the best val_loss epoch.
    ckpt = ctx.dir / "checkpoint_best.keras"
    twin_params = {"learning_rate": best["model__learning_rate"], "dropout_rate": best["model__dropout_rate"]}
    final = wrapper(model=create_model, loss="mean_squared_error", verbose=0, random_state=ctx.seed,
                    callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE,
                                                             restore_best_weights=True),
                               _plain_checkpoint(str(ckpt), twin_params)],
                    **best)
    final.fit(xs, ys)
    best_net = keras.models.load_model(ckpt, safe_mode=True)
    val_loss = float(np.min(final.history_["val_loss"]))

    class _Hist:
        history = {"loss": final.history_["loss"], "val_loss": final.history_["val_loss"]}
        epoch_axis = list(range(1, len(final.history_["loss"]) + 1))

    return finish(ctx, best_net, d, "regression_grid", _Hist,
                  {"architecture": "128σ-Drop(r)-64relu-Drop(r)-32σ-16relu-8σ-5relu-1", "optimizer": "sgd",
                   "grid": {k.replace("model__", ""): v for k, v in grid_spec.items()}, "cv": grid.cv,
                   "best_params": {k.replace("model__", ""): v for k, v in best.items()},
                   "early_stopping": {"monitor": "val_loss", "patience": PATIENCE,
                                      "restore_best_weights": True},
                   "validation_split": VALIDATION_SPLIT},
                  extra={"grid_results": results, "best_cv_r2": float(grid.best_score_),
                         "final_refit_epochs": int(final.epochs_run_), "checkpoint_val_loss": val_loss})

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

On TensorFlow the 36 cross-validation fits are trained together as the members of one stacked
network, and the refit as a one-member one (:mod:`edgekit.train.grid_stacked`: the same folds,
candidates, EarlyStopping rule and scores as GridSearchCV + scikeras; 32 s -> ~10 s here), the
refit's best epoch written once as the checkpoint. On other backends GridSearchCV runs scikeras'
KerasRegressor fit by fit (each a compiled :class:`edgekit.train.fit.Trainer`, same math as
``model.fit``) with Keras' EarlyStopping and ModelCheckpoint callbacks.
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


# The compiled trainers of the scikeras fits, one per (dropout, batch size, capacity): on TensorFlow
# only the final refit goes through scikeras (the CV fits are trained stacked, grid_stacked.py).
_TRAINERS: dict = {}


def _fast_get_weights(model) -> None:
    """``model.get_weights()`` in one compiled call instead of one eager read per variable.

    EarlyStopping(restore_best_weights=True) snapshots the weights at every improving epoch
    (14 eager reads each). Same arrays, same order.
    """
    import tensorflow as tf

    variables = list(model.weights)
    read_all = tf.function(lambda: [tf.identity(v.value) for v in variables])
    object.__setattr__(model, "get_weights", lambda: [t.numpy() for t in read_all()])


def _trainer(dropout: float, batch_size: int, capacity: int, val_capacity: int):
    """The compiled trainer for a fit of ``create_model(dropout_rate=dropout)`` at ``batch_size``."""
    import keras

    from edgekit.train.fit import make_trainer
    from edgekit.train.regression import N_FEATURES, deep_net

    key = (dropout, batch_size, capacity, val_capacity)
    if key not in _TRAINERS:
        tr = make_trainer(deep_net(dropout, name="grid_trainer"), keras.optimizers.SGD(0.01), "mse",
                          batch_size, capacity, N_FEATURES, val_capacity=val_capacity)
        if keras.backend.backend() == "tensorflow":
            _fast_get_weights(tr.model)
        _TRAINERS[key] = tr
    return _TRAINERS[key]


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
                          callbacks=self._fit_callbacks)
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


@register("regression_grid", "regression", "make_regression: grid-searched deep network (3-fold CV, 12 candidates)",
          quality="test R² > 0.95", cost=16.0, passes=lambda m: m["test_r2"] > 0.95,
          not_distributable="a grid search: 37 fits with validation and early stopping")
def regression_grid(ctx: TrainContext) -> TrainResult:
    import keras

    from edgekit.train.regression import data, finish

    d = data()
    seed_everything(ctx.seed)
    grid_spec = QUICK_GRID if ctx.quick else PARAM_GRID
    cv = 2 if ctx.quick else 3
    xs, ys = d.xs_train, d.ys_train.ravel()
    ckpt = ctx.dir / "checkpoint_best.keras"
    run = _stacked if keras.backend.backend() == "tensorflow" else _scikeras
    engine, cvr, best, refit_hist, epochs_run = run(ctx, xs, ys, grid_spec, cv, ckpt)
    best_net = keras.models.load_model(ckpt, safe_mode=True)
    best_index = int(np.argmin(cvr["rank_test_score"]))
    best_score = float(cvr["mean_test_score"][best_index])
    results = [{"params": {k.replace("model__", ""): v for k, v in p.items()},
                "mean_r2": float(m), "std_r2": float(s), "rank": int(r)}
               for p, m, s, r in zip(cvr["params"], cvr["mean_test_score"], cvr["std_test_score"],
                                     cvr["rank_test_score"])]
    val_loss = float(np.min(refit_hist["val_loss"]))

    class _Hist:
        history = {"loss": refit_hist["loss"], "val_loss": refit_hist["val_loss"]}
        epoch_axis = list(range(1, len(refit_hist["loss"]) + 1))

    return finish(ctx, best_net, d, "regression_grid", _Hist,
                  {"architecture": "128σ-Drop(r)-64relu-Drop(r)-32σ-16relu-8σ-5relu-1", "optimizer": "sgd",
                   "grid": {k.replace("model__", ""): v for k, v in grid_spec.items()}, "cv": cv,
                   "search": engine,
                   "best_params": {k.replace("model__", ""): v for k, v in best.items()},
                   "early_stopping": {"monitor": "val_loss", "patience": PATIENCE,
                                      "restore_best_weights": True},
                   "validation_split": VALIDATION_SPLIT},
                  extra={"grid_results": results, "best_cv_r2": best_score,
                         "final_refit_epochs": int(epochs_run), "checkpoint_val_loss": val_loss})


def _best(cvr, log, n_cand: int) -> dict:
    i = int(np.argmin(cvr["rank_test_score"]))  # GridSearchCV's best_index_
    if log:
        log(f"  grid: best {cvr['params'][i]} mean R² {float(cvr['mean_test_score'][i]):.4f} over {n_cand} candidates")
    return cvr["params"][i]


def _stacked(ctx: TrainContext, xs, ys, grid_spec: dict, cv: int, ckpt):
    """TensorFlow: the CV fits and then the refit as members of stacked networks (grid_stacked.py).

    The refit's best val_loss epoch (EarlyStopping's restored weights) is written to ``ckpt``
    once, the file ModelCheckpoint(save_best_only=True) would have left.
    """
    from edgekit.train import grid_stacked

    cvr = grid_stacked.search(create_model(), xs, ys, grid_spec, cv, PATIENCE, VALIDATION_SPLIT, ctx.seed,
                              log=ctx.log)
    best = _best(cvr, ctx.log, len(cvr["params"]))
    seed_everything(ctx.seed)
    net = create_model(best["model__learning_rate"], best["model__dropout_rate"])
    hist = grid_stacked.refit(net, xs, ys, best, PATIENCE, VALIDATION_SPLIT, ctx.seed)
    net.save(ckpt)
    return ("stacked: the CV fits and the refit trained as members of one network (grid_stacked.py)",
            cvr, best, hist, hist["epochs_run"])


def _scikeras(ctx: TrainContext, xs, ys, grid_spec: dict, cv: int, ckpt):
    """Other backends: GridSearchCV over scikeras' KerasRegressor, then its refit with Keras callbacks."""
    import keras
    from sklearn.model_selection import GridSearchCV

    wrapper = _wrapper_class()
    early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE, restore_best_weights=True)
    est = wrapper(model=create_model, loss="mean_squared_error", callbacks=[early], verbose=0, random_state=ctx.seed)
    search = GridSearchCV(est, grid_spec, cv=cv, refit=False, error_score="raise").fit(xs, ys)
    cvr = search.cv_results_
    best = _best(cvr, ctx.log, len(cvr["params"]))
    final = wrapper(model=create_model, loss="mean_squared_error", verbose=0, random_state=ctx.seed,
                    callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE,
                                                             restore_best_weights=True),
                               keras.callbacks.ModelCheckpoint(str(ckpt), monitor="val_loss", save_best_only=True)],
                    **best)
    final.fit(xs, ys)
    return ("scikit-learn GridSearchCV over scikeras KerasRegressor", cvr, best,
            {"loss": final.history_["loss"], "val_loss": final.history_["val_loss"]}, final.epochs_run_)

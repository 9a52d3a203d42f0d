"""The grid search's stacked CV fits train each member exactly as its own fit would (issue 17 item 5).

A member of :class:`edgekit.train.grid_stacked.StackedGroup` is compared with the same fit run
alone by :class:`edgekit.train.fit.Trainer` with Keras' own EarlyStopping callback: full-batch
steps (so the shuffle order cannot matter), members of different fold sizes and learning rates
in one group, one of them diverging so that early stopping and the best-weight restore are
exercised. Then the search's bookkeeping is checked against scikit-learn's (folds, candidate
order, ranks) and its winner against GridSearchCV's on a grid with a clear answer.
"""

from __future__ import annotations

import numpy as np
import pytest

N_FEATURES = 3


def _net(dropout: float = 0.0):
    import keras

    keras.utils.set_random_seed(7)
    return keras.Sequential([keras.Input((N_FEATURES,)), keras.layers.Dense(8, activation="sigmoid"),
                             keras.layers.Dropout(dropout), keras.layers.Dense(4, activation="relu"),
                             keras.layers.Dense(1)])


def _data(n: int = 90):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y


def _alone(initial, x, y, train_idx, lr, epochs, patience, k):
    """The member's fit on its own: Trainer + keras EarlyStopping(restore_best_weights=True)."""
    import keras

    from edgekit.train.fit import Trainer

    n_val = int(round(len(train_idx) * 0.2))
    fit_rows, val_rows = train_idx[:-n_val], train_idx[-n_val:]
    net = _net()
    net.set_weights(initial)
    tr = Trainer(net, keras.optimizers.SGD(lr), "mse", k, k, N_FEATURES, val_capacity=len(val_rows))
    early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    hist = tr.fit(x[fit_rows], y[fit_rows], epochs=epochs, validation=(x[val_rows], y[val_rows]),
                  callbacks=[early])
    return net.get_weights(), hist


def test_each_member_trains_as_its_own_fit_with_early_stopping():
    from edgekit.train.grid_stacked import Member, StackedGroup, architecture

    x, y = _data()
    k, epochs, patience = 64, 40, 3
    spec = [(0.05, np.arange(0, 50)), (0.2, np.arange(10, 80)), (6.0, np.arange(5, 65))]  # the last diverges
    members = [Member(0, i, lr, 0.0, k, epochs, rows, rows[:5]) for i, (lr, rows) in enumerate(spec)]
    model = _net()
    dense, drops = architecture(model)
    group = StackedGroup(dense, drops, model.get_weights(), members, x, y, 0.2, patience, seed=0)
    group.fit(epochs)
    ran = group.epochs_run.numpy()
    for i, (lr, rows) in enumerate(spec):
        want, hist = _alone(model.get_weights(), x, y, rows, lr, epochs, patience, k)
        assert ran[i] == hist.epochs_run, f"member {i}: epochs"
        np.testing.assert_allclose([v[i] for v in group.val_history[: ran[i]]], hist.history["val_loss"],
                                   rtol=2e-4, atol=1e-6)
        got = [v.numpy()[i] for wb in group.weights for v in wb]
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert ran[2] < epochs  # the diverging member stopped early
    assert len({int(r) for r in ran}) > 1  # members stopped at different epochs, each on its own


def test_dropout_follows_each_members_rate_and_inference_has_none():
    from edgekit.train.grid_stacked import Member, StackedGroup, architecture

    x, y = _data()
    rows = np.arange(60)
    members = [Member(0, 0, 0.1, 0.0, 16, 2, rows, rows[:8]), Member(1, 0, 0.1, 0.5, 16, 2, rows, rows[:8])]
    model = _net(0.5)
    dense, drops = architecture(model)
    assert drops == [0]
    group = StackedGroup(dense, drops, model.get_weights(), members, x, y, 0.2, 10, seed=0)
    group.fit(2)
    w = group.weights[0][0].numpy()
    assert not np.allclose(w[0], w[1])  # same start, same rows: only the dropout rate differs
    np.testing.assert_array_equal(group.predict(1, x[:8]), group.predict(1, x[:8]))


def test_search_folds_order_and_ranks_are_scikit_learns():
    from sklearn.model_selection import KFold, ParameterGrid

    from edgekit.train.grid_stacked import search

    x, y = _data(120)
    grid = {"model__learning_rate": [1e-6, 0.2], "model__dropout_rate": [0.0], "batch_size": [16], "epochs": [40]}
    r = search(_net(), x, y, grid, cv=3, patience=40, validation_split=0.2, seed=0)
    assert r["params"] == list(ParameterGrid(grid))
    assert r["split_scores"].shape == (2, 3)
    np.testing.assert_allclose(r["mean_test_score"], r["split_scores"].mean(1))
    assert list(r["rank_test_score"]) == [2, 1]  # a learning rate of 1e-6 learns nothing in 40 epochs
    assert r["mean_test_score"][1] > 0.5
    assert len(list(KFold(3).split(x))) == r["epochs_run"].shape[1]


def test_search_picks_gridsearchcvs_winner():
    import keras
    from sklearn.model_selection import GridSearchCV

    from edgekit.train import grid as grid_example
    from edgekit.train.grid_stacked import search
    from edgekit.train.regression import data

    d = data()
    xs, ys = d.xs_train[:300], d.ys_train.ravel()[:300]
    spec = {"model__learning_rate": [1e-4, 0.1], "model__dropout_rate": [0.2], "batch_size": [32], "epochs": [12]}
    keras.utils.set_random_seed(0)
    stacked = search(grid_example.create_model(), xs, ys, spec, cv=2, patience=10, validation_split=0.2, seed=0)
    est = grid_example._wrapper_class()(
        model=grid_example.create_model, loss="mean_squared_error", verbose=0, random_state=0,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)])
    gs = GridSearchCV(est, spec, cv=2, refit=False, error_score="raise").fit(xs, ys)
    assert int(np.argmin(stacked["rank_test_score"])) == gs.best_index_ == 1


def test_architecture_refuses_other_layers():
    import keras

    from edgekit.train.grid_stacked import architecture

    net = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                            keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="layers must be Dense or Dropout, got Conv2D"):
        architecture(net)

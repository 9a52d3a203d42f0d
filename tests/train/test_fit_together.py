"""Models trained as one stacked network get what each one's own fit gives (issue 17 item 5: the moons sweep).

:func:`edgekit.train.fit_stacked.fit_together` trains the sweep's sizes as one stacked network; each model
must end with the weights and loss history its own :func:`edgekit.train.fit.fit` would give (same
init, same batches, Adam elementwise, L2 per model). Then the runner: a group with a prefit is
scheduled into one worker, its members say how they were trained, and an example asked for alone
trains alone.
"""

from __future__ import annotations

import json

import numpy as np


def _models(hiddens):
    from edgekit.train.common import seed_everything
    from edgekit.train.moons import build_model

    out = []
    for h in hiddens:
        seed_everything(0)
        out.append(build_model(h))
    return out


def test_fit_together_equals_each_models_own_fit():
    import keras

    from edgekit.train.fit import fit
    from edgekit.train.fit_stacked import fit_together
    from edgekit.train.moons import data

    x, _, y, _ = data()
    hiddens, epochs = [1, 3, 20], 40
    alone = _models(hiddens)
    want = [fit(m, x, y, epochs=epochs, batch_size=32, optimizer=keras.optimizers.Adam(0.01),
                loss="sparse_categorical_crossentropy", seed=0) for m in alone]
    together = _models(hiddens)
    got = fit_together(together, x, y, epochs=epochs, batch_size=32, optimizer=lambda: keras.optimizers.Adam(0.01),
                       loss="sparse_categorical_crossentropy", seed=0)
    for a, b, ha, hb in zip(alone, together, want, got, strict=True):
        np.testing.assert_allclose(hb.history["loss"], ha.history["loss"], rtol=1e-5)
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-5)
    assert got[0].history["loss"] != got[1].history["loss"]  # each its own loss, not the sum


def test_moons_group_trains_together_in_one_worker_and_alone_when_single(tmp_path):
    from edgekit.train.backends import Plan
    from edgekit.train.registry import select
    from edgekit.train.runner import _units, train_examples

    units = _units(select(["all"]), Plan())
    moons = [u for u in units if u[2] == "moons"]
    assert len(moons) == 1 and len(moons[0][0]) == 7  # one scheduling unit: the whole sweep
    assert all(len(u[0]) == 1 for u in units if u[2] != "moons")

    lines: list[str] = []
    train_examples(select(["moons_h1", "moons_h3", "and_gate"]), tmp_path, quick=True, jobs=2, log=lines.append)
    assert any(line.startswith("moons: wrote") for line in lines), lines  # by the worker that trained them
    for name in ("moons_h1", "moons_h3"):
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        assert m["hyperparams"]["trained"].startswith("together"), m["hyperparams"]
    assert (tmp_path / "moons_sweep.png").stat().st_size > 0
    train_examples(select(["moons_h2"]), tmp_path / "one", quick=True, log=lambda *a: None)
    m = json.loads((tmp_path / "one" / "moons_h2" / "metrics.json").read_text())
    assert m["hyperparams"]["trained"] == "alone"


def test_only_dense_networks_differing_in_width_stack():
    import keras

    from edgekit.train.fit_stacked import _spec

    assert _spec(_models([1, 50])) == [("tanh", 0.01, [1, 50]), ("softmax", 0.0, [2, 2])]
    other_out = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(3)])
    with_dropout = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="tanh"),
                                     keras.layers.Dropout(0.5), keras.layers.Dense(2, activation="softmax")])
    relu = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="relu"),
                             keras.layers.Dense(2, activation="softmax")])
    for other in (other_out, with_dropout, relu):
        assert _spec([_models([3])[0], other]) is None  # these train one after another instead

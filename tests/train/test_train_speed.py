"""What makes ``edgekit train all`` fast keeps the same math (issue 17 item 5). Behaviour only: no timings.

- the grid search's fits share ONE compiled trainer: the batch size is a runtime value
  (``dynamic_batch``) and the dropout rate a variable, and such a trainer trains exactly as the
  static one of that batch size does;
- the grid's checkpoint is a plain Keras model (the trainer's own dropout layers stay inside it);
- the moons sweep figure evaluates the saved models in numpy (no Keras in the parent process),
  which agrees with Keras;
- the serving signature read from ``saved_model.pb`` equals what ``tf.saved_model.load`` reports.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest


def _net(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(1)])


@pytest.mark.parametrize("k", [16, 32])
def test_dynamic_batch_trainer_matches_the_static_one(k):
    import keras

    from edgekit.train.fit import Trainer

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 3)).astype(np.float32), rng.normal(size=(100, 1)).astype(np.float32)
    xv, yv = x[:20], y[:20]
    static_net, dyn_net = _net(1), _net(1)
    static = Trainer(static_net, keras.optimizers.SGD(0.05), "mse", k, 128, 3, val_capacity=32)
    dyn = Trainer(dyn_net, keras.optimizers.SGD(0.05), "mse", 32, 128, 3, val_capacity=32, dynamic_batch=True)
    h1 = static.fit(x, y, epochs=6, seed=3, validation=(xv, yv))
    h2 = dyn.fit(x, y, epochs=6, seed=3, validation=(xv, yv), batch_size=k)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(h2.history["val_loss"], h1.history["val_loss"], rtol=1e-5)
    for a, b in zip(dyn_net.get_weights(), static_net.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dynamic_batch_refuses_a_bigger_batch_or_a_static_trainer():
    import keras

    from edgekit.train.fit import Trainer

    x, y = np.zeros((10, 3), np.float32), np.zeros((10, 1), np.float32)
    dyn = Trainer(_net(0), keras.optimizers.SGD(0.1), "mse", 8, 16, 3, dynamic_batch=True)
    with pytest.raises(ValueError, match="batch_size must be in 1..8"):
        dyn.fit(x, y, epochs=1, batch_size=16)
    static = Trainer(_net(0), keras.optimizers.SGD(0.1), "mse", 8, 16, 3)
    with pytest.raises(ValueError, match="dynamic_batch"):
        static.fit(x, y, epochs=1, batch_size=4)


def test_grid_fits_share_one_trainer_whose_dropout_follows_the_fit():
    import keras

    from edgekit.train import grid

    grid._TRAINERS.clear()
    a = grid._trainer(0.2, 16, grid.CAPACITY, grid.VAL_CAPACITY)
    assert float(a.grid_rate.rate.numpy()) == pytest.approx(0.2)
    b = grid._trainer(0.5, 32, grid.CAPACITY, grid.VAL_CAPACITY)
    assert a is b and len(grid._TRAINERS) == 1 and a.dynamic_batch
    assert float(a.grid_rate.rate.numpy()) == pytest.approx(0.5)
    # the trainer's net has deep_net's weights, in deep_net's order and shapes
    ref = grid.create_model(0.01, 0.2)
    assert [w.shape for w in a.model.get_weights()] == [w.shape for w in ref.get_weights()]
    drop = [lay for lay in a.model.layers if not isinstance(lay, keras.layers.Dense)]
    assert len(drop) == 2 and not drop[0].weights
    x = np.ones((4, 10), np.float32)
    np.testing.assert_array_equal(a.model(x, training=False), a.model(x, training=False))  # no dropout at inference
    grid._TRAINERS.clear()


def test_grid_checkpoint_is_a_plain_keras_model(quick_example):
    import keras

    d = quick_example("regression_grid")
    ckpt = d / "checkpoint_best.keras"
    with zipfile.ZipFile(ckpt) as z:
        cfg = json.loads(z.read("config.json"))
    assert {lay["class_name"] for lay in cfg["config"]["layers"]} <= {"InputLayer", "Dense", "Dropout"}
    net = keras.models.load_model(ckpt, safe_mode=True)
    assert len(net.get_weights()) == 14
    m = json.loads((d / "metrics.json").read_text())
    assert m["hyperparams"]["best_params"]["dropout_rate"] in (0.2, 0.5) and len(m["grid_results"]) == 2


def test_sweep_figure_numpy_forward_matches_keras(quick_example):
    import keras

    from edgekit.train.dense_numpy import DenseStack

    d = quick_example("moons_h3")
    x = np.random.default_rng(0).uniform(-2, 3, size=(500, 2)).astype(np.float32)
    want = np.asarray(keras.models.load_model(d / "model.keras", compile=False, safe_mode=True)(x))
    np.testing.assert_allclose(DenseStack(d / "model.keras")(x), want, atol=1e-6)


def test_dense_stack_refuses_other_layers(quick_example):
    from edgekit.train.dense_numpy import DenseStack

    with pytest.raises(ValueError, match="Dense-only Sequential"):
        DenseStack(quick_example("regression_mlp") / "model.keras")  # Normalization, Rescaling inside


def test_signature_from_the_protobuf_equals_the_loaded_saved_model(quick_example):
    import tensorflow as tf

    from edgekit.train.common import _signature_info

    sm = quick_example("regression_mlp") / "saved_model" / "1"
    sig = tf.saved_model.load(str(sm)).signatures["serving_default"]
    ins = [{"name": k, "shape": v.shape.as_list(), "dtype": v.dtype.name}
           for k, v in sorted(sig.structured_input_signature[1].items())]
    outs = [{"name": k, "shape": v.shape.as_list(), "dtype": v.dtype.name}
            for k, v in sorted(sig.structured_outputs.items())]
    assert _signature_info(sm) == (ins, outs)


def test_grid_trainer_get_weights_is_the_models():
    from edgekit.train import grid

    grid._TRAINERS.clear()
    tr = grid._trainer(0.2, 16, grid.CAPACITY, grid.VAL_CAPACITY)
    want = [v.numpy() for v in tr.model.weights]
    got = tr.model.get_weights()
    assert len(got) == len(want) == 14
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    tr.model.set_weights([w + 1 for w in got])
    np.testing.assert_array_equal(tr.model.get_weights()[0], want[0] + 1)  # reads the current values
    grid._TRAINERS.clear()

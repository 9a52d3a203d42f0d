"""What makes ``edgekit train all`` fast keeps the same math (issue 17 item 5). Behaviour only: no timings.

- the grid's CV fits are trained stacked (tests/train/test_grid_stacked.py); its refit's checkpoint
  is a plain Keras model and its trainer's compiled get_weights reads the model's weights;
- the moons sweep figure evaluates the saved models in numpy (no Keras in the parent process),
  which agrees with Keras;
- the serving signature read from ``saved_model.pb`` equals what ``tf.saved_model.load`` reports.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest


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

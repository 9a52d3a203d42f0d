"""Each example in --quick mode writes the full artifact layout, and the SavedModel reproduces it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.train.registry import load

ALL = sorted(load())
# The quick suite trains a representative per model family; the slow marker covers the rest.
FAST = ["and_gate", "linear_regression", "moons_h3", "regression_linear", "regression_deep",
        "regression_mlp", "regression_grid"]


def _params():
    return [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in ALL]


@pytest.mark.parametrize("name", _params())
def test_artifact_layout(quick_example, name):
    d = quick_example(name)
    for rel in ["saved_model/1/saved_model.pb", "saved_model/1/variables", "model.keras", "reference.npz",
                "calibration.npz", "example.json", "metrics.json", "training_loss.png"]:
        assert (d / rel).exists(), rel
    meta = json.loads((d / "example.json").read_text())
    assert meta["name"] == name
    assert [i["name"] for i in meta["inputs"]] == ["features"]
    assert meta["inputs"][0]["shape"][0] is None, "batch dimension must be dynamic"
    metrics = json.loads((d / "metrics.json").read_text())
    for key in ("metrics", "hyperparams", "seed", "versions", "train_seconds"):
        assert key in metrics
    with np.load(d / "reference.npz", allow_pickle=False) as ref:
        x = ref["features"]
        out = ref[meta["outputs"][0]["name"]]
        assert x.dtype == np.float32 and out.dtype == np.float32
        assert len(x) == len(out) == meta["reference"]["n_labeled"] + meta["reference"]["n_extra"]
        assert len(ref["y_true"]) == meta["reference"]["n_labeled"]


@pytest.mark.parametrize("name", FAST)
def test_saved_model_reproduces_reference(quick_example, name):
    import tensorflow as tf

    d = quick_example(name)
    meta = json.loads((d / "example.json").read_text())
    sig = tf.saved_model.load(str(d / "saved_model" / "1")).signatures["serving_default"]
    with np.load(d / "reference.npz", allow_pickle=False) as ref:
        got = sig(features=tf.constant(ref["features"]))
        out_name = meta["outputs"][0]["name"]
        # 1e-6 of the target range: the SavedModel's graph (grappler-fused kernels) and eager Keras
        # round differently, and raw-scale regression outputs (|y| up to ~400) carry float32's ~6e-8
        # relative resolution times that range. For classifiers the range is 1, so this is 1e-6.
        scale = max(1.0, float(np.abs(ref["y_true"]).max()))
        np.testing.assert_allclose(got[out_name].numpy(), ref[out_name], atol=1e-6 * scale, rtol=0)
        # Dynamic batch: a single row and an odd-sized batch both run.
        assert sig(features=tf.constant(ref["features"][:1]))[out_name].shape[0] == 1
        assert sig(features=tf.constant(ref["features"][:7]))[out_name].shape[0] == 7


@pytest.mark.parametrize("name", ["regression_linear", "regression_mlp"])
def test_scaling_folded_in(quick_example, name):
    """The SavedModel takes raw features and returns raw-scale targets (no scaler on the device)."""
    import keras
    import tensorflow as tf

    from edgekit.train.regression import data

    d = quick_example(name)
    sig = tf.saved_model.load(str(d / "saved_model" / "1")).signatures["serving_default"]
    data_ = data()
    x_raw = data_.x_test[:50]
    got = sig(features=tf.constant(x_raw))["output_0"].numpy()
    # Independently: scale with sklearn, run the inner network, unscale with sklearn.
    model = keras.models.load_model(d / "model.keras", safe_mode=True)
    inner = [layer for layer in model.layers if isinstance(layer, keras.Sequential)][0]
    expected = data_.scaler_y.inverse_transform(np.asarray(inner(data_.scaler_x.transform(x_raw))))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    # Raw scale, not standardised: the targets' spread is far from 1.
    assert np.std(data_.y_test) > 10
    assert abs(np.std(got) - 1.0) > 1.0


def test_registry_lists_every_example():
    names = set(load())
    expected = {"and_gate", "or_gate", "linear_regression", "regression_linear", "regression_deep",
                "regression_grid", "regression_mlp"} | {f"moons_h{h}" for h in (1, 2, 3, 4, 5, 20, 50)}
    assert names == expected

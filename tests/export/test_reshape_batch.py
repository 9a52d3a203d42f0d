"""The ``reshape-batch->-1`` rewrite: Keras' Reshape layer (target shape built at run time from the
input's batch) becomes a Reshape to a constant ``[-1, ...]``, so XNNPACK takes a squeeze-and-excitation
CNN as one delegate partition instead of one per Reshape."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the rewrites work on TensorFlow graphs (edgekit[export])")
keras = pytest.importorskip("keras", reason="the test model is a Keras model")

from edgekit.export import graph as graph_mod  # noqa: E402
from edgekit.export import legalize as lg  # noqa: E402

NAME = "reshape-batch->-1"
C = 8


def _se_model():
    """Conv -> squeeze-and-excitation (GlobalAveragePooling -> Reshape((1, 1, C)) -> 1x1 Conv ->
    Multiply), twice, -> Dense: the block EfficientNet repeats 16 times."""
    keras.utils.set_random_seed(0)
    x = inp = keras.Input((8, 8, 3), name="image")
    for i in range(2):
        x = keras.layers.Conv2D(C, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        se = keras.layers.GlobalAveragePooling2D(name=f"se{i}_squeeze")(x)
        se = keras.layers.Reshape((1, 1, C), name=f"se{i}_reshape")(se)
        se = keras.layers.Conv2D(C, 1, activation="sigmoid", name=f"se{i}_excite")(se)
        x = keras.layers.Multiply(name=f"se{i}_scale")([x, se])
    out = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def _rewrite(fn, spec, feeds):
    cf = tf.function(fn, input_signature=[spec]).get_concrete_function()
    frozen, gd = graph_mod.freeze(cf)
    outs = [t.name for t in frozen.outputs]
    gd, applied = lg.legalize(gd, (lg.BY_NAME[NAME],), graph_mod.static_shapes(gd),
                              keep=[o.split(":")[0] for o in outs])
    _, wrapped = graph_mod._wrap(gd, {"in0": frozen.inputs[0].name}, {"out0": outs[0]})
    results = [(np.asarray(tf.nest.flatten(cf(tf.constant(f)))[0]), wrapped(tf.constant(f))["out0"].numpy())
               for f in feeds]
    return {n.op for n in gd.node}, gd, applied, results


def test_keras_reshape_gets_a_constant_target_with_dynamic_batch():
    model = _se_model()
    rng = np.random.default_rng(0)
    feeds = [rng.normal(size=(n, 8, 8, 3)).astype(np.float32) for n in (1, 5, 0)]
    ops, gd, applied, results = _rewrite(lambda t: model(t, training=False),
                                         tf.TensorSpec([None, 8, 8, 3], tf.float32), feeds)
    assert applied == [{"name": NAME, "count": 2}]
    assert not {"Shape", "StridedSlice", "Pack"} & ops
    shapes = [tf.make_ndarray(n.attr["value"].tensor).tolist() for n in gd.node
              if n.op == "Const" and n.name.endswith("/edgekit_shape")]
    assert shapes == [[-1, 1, 1, C]] * 2
    for want, got in results:  # batch 1, 5 and an empty batch: the same values, bit for bit
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_dense_on_a_sequence_gets_constant_tensordot_shapes():
    """keras Dense on a rank-3 input: Tensordot reshapes to [prod(Shape(x)[:2]), K] and back to
    Shape(x)[:2] + [units] (the pattern of every Transformer block's Dense layers)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 5))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Dense(7, activation="relu")(inp)))
    rng = np.random.default_rng(2)
    feeds = [rng.normal(size=(n, 6, 5)).astype(np.float32) for n in (1, 4, 0)]
    ops, _, applied, results = _rewrite(lambda t: model(t, training=False), tf.TensorSpec([None, 6, 5], tf.float32),
                                        feeds)
    assert applied == [{"name": NAME, "count": 4}]
    assert not {"Shape", "GatherV2", "Prod", "Pack"} & ops  # (a ConcatV2 of constants stays: a Transpose perm)
    for want, got in results:
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", ["two run-time entries", "a -1 already", "a computed dim"])
def test_other_reshapes_are_left_alone(case):
    def fn(t):
        flat = tf.reshape(t, [-1, 12])
        if case == "two run-time entries":
            return tf.reshape(flat, tf.stack([tf.shape(flat)[0], tf.shape(flat)[0] * 0 + 3, 4]))
        if case == "a -1 already":
            return tf.reshape(flat, tf.stack([tf.shape(flat)[0], -1, 4]))
        return tf.reshape(flat, tf.stack([tf.shape(flat)[0], tf.shape(flat)[1] // 4, 4]))

    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    ops, _, applied, results = _rewrite(fn, tf.TensorSpec([None, 3, 4], tf.float32), [x[:1]])
    assert applied == [] and "Pack" in ops
    np.testing.assert_array_equal(results[0][1], results[0][0])


def test_se_model_exports_as_one_xnnpack_partition(tmp_path):
    pytest.importorskip("ai_edge_litert", reason="the partition count needs LiteRT's interpreter")
    from edgekit.bench.partitions import delegate_partitions
    from edgekit.export.api import export_model
    from edgekit.runtime.registry import open_model

    model = _se_model()
    sm = tmp_path / "saved_model"
    model.export(str(sm), verbose=False)
    rng = np.random.default_rng(1)
    calib = tmp_path / "calibration.npz"
    np.savez(calib, image=rng.normal(size=(32, 8, 8, 3)).astype(np.float32))
    export_model(sm, out=tmp_path / "exports", formats=["tflite"], precisions=["fp32", "int8"], calibration=calib)
    import json

    arts = {a["precision"]: a for a in json.loads((tmp_path / "exports" / "manifest.json").read_text())["artifacts"]}
    x = rng.normal(size=(5, 8, 8, 3)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    for precision in ("fp32", "int8"):
        art = arts[precision]
        assert NAME in art["rewrites"], art
        path = tmp_path / "exports" / art["path"]
        assert delegate_partitions(path)["partitions"] == 1
        with open_model(path, num_threads=1) as r:
            for n in (1, 5):  # the batch stays dynamic
                got = r.predict({"image": x[:n]})["output_0"]
                tol = 1e-5 if precision == "fp32" else 0.1 * float(np.abs(want).max())
                np.testing.assert_allclose(got, want[:n], rtol=0, atol=tol)

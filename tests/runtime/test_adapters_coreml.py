"""Core ML adapter: the numpy reference evaluator on ML Programs saved by coremltools."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from edgekit.core.errors import InputError, RuntimeFailure, Unverifiable, UsageError
from edgekit.runtime.coreml import CoreMLRunner
from edgekit.runtime.registry import open_model

pytestmark = pytest.mark.filterwarnings("ignore")
ct = pytest.importorskip("coremltools", reason="coremltools (edgekit[coreml]) is not installed")

RNG = np.random.default_rng(0)
W = RNG.normal(size=(6, 4)).astype(np.float32)
B = RNG.normal(size=6).astype(np.float32)


def _many_ops_program():
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import get_new_symbol

    @mb.program(input_specs=[mb.TensorSpec(shape=(get_new_symbol(), 4))])
    def prog(x):
        h = mb.linear(x=x, weight=W, bias=B)
        c = mb.concat(values=(mb.tanh(x=h), mb.sigmoid(x=h)), axis=-1)
        tr = mb.transpose(x=mb.reshape(x=c, shape=[-1, 3, 4]), perm=[0, 2, 1])
        d = mb.real_div(x=mb.reduce_mean(x=tr, axes=[-1], keep_dims=False), y=np.float32(3.0))
        e = mb.exp(x=mb.clip(x=mb.leaky_relu(x=mb.sub(x=d, y=np.float32(0.1)), alpha=0.2),
                             alpha=-1.0, beta=1.0))
        return mb.softmax(x=mb.mul(x=e, y=np.float32(2.0)), axis=-1, name="y")

    return prog


def _by_hand(x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float64) @ W.T.astype(np.float64) + B
    c = np.concatenate([np.tanh(h), 1 / (1 + np.exp(-h))], axis=-1)
    d = c.reshape(-1, 3, 4).transpose(0, 2, 1).mean(-1) / 3 - 0.1
    z = 2 * np.exp(np.clip(np.where(d >= 0, d, 0.2 * d), -1, 1))
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def many_ops(tmp_path_factory):
    d = tmp_path_factory.mktemp("coreml-ops")
    prog = _many_ops_program()
    for name, prec in (("fp32", ct.precision.FLOAT32), ("fp16", ct.precision.FLOAT16)):
        model = ct.convert(prog, convert_to="mlprogram", compute_precision=prec,
                           inputs=[ct.TensorType(name="x", shape=(ct.RangeDim(1, 8), 4))])
        model.save(str(d / f"{name}.mlpackage"))
    return d


def test_fp32_program_matches_hand_computation(many_ops):
    x = RNG.normal(size=(20, 4)).astype(np.float32)
    with open_model(many_ops / "fp32.mlpackage") as r:
        assert r.runtime_name == "coreml numpy reference evaluator (fp32)"
        ops = {op.op_type for op in r._eval.ops}
        assert {"linear", "tanh", "sigmoid", "concat", "reshape", "transpose", "reduce_mean",
                "leaky_relu", "clip", "exp", "softmax"} <= ops
        assert r.max_batch == 8  # RangeDim(1, 8): 20 rows run as chunks of 8
        y = r.predict(x)["y"]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _by_hand(x), rtol=0, atol=1e-6)


def test_fp16_program_computes_in_fp16(many_ops):
    x = RNG.normal(size=(20, 4)).astype(np.float32)
    with open_model(many_ops / "fp16.mlpackage") as r:
        assert r.runtime_name == "coreml numpy reference evaluator (fp16)"
        assert r.inputs[0].dtype == r.outputs[0].dtype == "float32"  # the model's interface stays fp32
        y = r.predict(x)["y"]
    err = np.abs(y - _by_hand(x)).max()
    assert 1e-5 < err < 1e-2, f"fp16 program should differ from fp32 by fp16 rounding, got {err:.2e}"
    # every value is an fp16 number cast back to fp32
    np.testing.assert_array_equal(y, y.astype(np.float16).astype(np.float32))


def test_unsupported_op_is_refused_by_name(tmp_path):
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 4, 4))])
    def prog(x):
        return mb.l2_pool(x=mb.relu(x=x), kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid", name="y")

    ct.convert(prog, convert_to="mlprogram").save(str(tmp_path / "l2pool.mlpackage"))
    with pytest.raises(Unverifiable) as exc:  # verify turns it into an ``unverified`` row naming the op
        open_model(tmp_path / "l2pool.mlpackage")
    msg = str(exc.value)
    assert "does not implement the operation(s) l2_pool" in msg and "\n" not in msg and exc.value.exit_code == 1


def test_neural_network_mlmodel_needs_macos(tmp_path):
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 4))])
    def prog(x):
        return mb.relu(x=x, name="y")

    ct.convert(prog, convert_to="neuralnetwork").save(str(tmp_path / "nn.mlmodel"))
    with pytest.raises(InputError, match="only ML Programs.*neuralNetwork"):
        open_model(tmp_path / "nn.mlmodel", evaluator="reference")


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML itself runs on macOS")
def test_native_evaluator_refused_off_macos(runtime_models):
    with pytest.raises(UsageError, match="only on macOS"):
        open_model(runtime_models["coreml_fp32"], evaluator="native")


def test_unknown_evaluator(runtime_models):
    with pytest.raises(UsageError, match="unknown Core ML evaluator"):
        CoreMLRunner(runtime_models["coreml_fp32"], evaluator="gpu")


def test_converted_keras_model_within_issue_bounds(runtime_models, reference_outputs, golden):
    """The issue's bounds: fp32 within 1e-5, fp16 within ~1e-2 of TensorFlow's output."""
    x = golden()
    for key, bound in (("coreml_fp32", 1e-5), ("coreml_fp16", 1e-2)):
        with open_model(runtime_models[key]) as r:
            err = np.abs(r.predict(x)["output_0"] - reference_outputs["output_0"]).max()
            assert err <= bound, f"{key}: {err:.2e}"
            assert r.max_batch == 65536


@pytest.fixture(scope="module")
def conv_models(tmp_path_factory):
    """Conv1D (valid, same + dilation, strided same), AveragePooling1D(same), global pooling and a
    Conv2D(same) + MaxPooling2D branch, converted from the SavedModel like the exporter does."""
    import keras
    import tensorflow as tf

    d = tmp_path_factory.mktemp("coreml-conv")
    keras.utils.set_random_seed(0)
    init = keras.initializers.RandomNormal(stddev=0.5, seed=1)
    x = keras.Input((16,), name="features")
    a = keras.layers.Reshape((16, 1))(x)
    a = keras.layers.Conv1D(4, 3, activation="relu", bias_initializer=init)(a)
    a = keras.layers.Conv1D(4, 2, padding="same", dilation_rate=2, bias_initializer=init)(a)
    a = keras.layers.Conv1D(6, 3, strides=2, padding="same", bias_initializer=init)(a)
    a = keras.layers.GlobalAveragePooling1D()(keras.layers.AveragePooling1D(2, padding="same")(a))
    b = keras.layers.Reshape((4, 4, 1))(x)
    b = keras.layers.Conv2D(3, (2, 3), padding="same", activation="relu", bias_initializer=init)(b)
    b = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(b))
    y = keras.layers.Dense(2, activation="softmax", bias_initializer=init)(keras.layers.Concatenate()([a, b]))
    keras.Model(x, y).export(str(d / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(d / "sm"))
    fn = loaded.signatures["serving_default"]
    for name, prec in (("fp32", ct.precision.FLOAT32), ("fp16", ct.precision.FLOAT16)):
        ct.convert([fn], source="tensorflow", convert_to="mlprogram", compute_precision=prec,
                   inputs=[ct.TensorType(name="features", shape=(ct.RangeDim(1, 1024), 16))]
                   ).save(str(d / f"{name}.mlpackage"))
    return d


def test_converted_conv_model_matches_tensorflow(conv_models):
    x = RNG.normal(size=(50, 16)).astype(np.float32)
    with open_model(conv_models / "sm") as tf_runner:
        want = tf_runner.predict(x)["output_0"]
    for name, bound in (("fp32", 1e-5), ("fp16", 1e-2)):
        with open_model(conv_models / f"{name}.mlpackage") as r:
            assert {"conv", "max_pool", "avg_pool", "pad"} <= {op.op_type for op in r._eval.ops}
            (got,) = r.predict(x).values()
        err = np.abs(got - want).max()
        assert err <= bound, f"{name}: {err:.2e}"


def _naive_conv1d(x, w, b, stride, dilation, groups, pads):
    x = np.pad(x.astype(np.float64), [(0, 0), (0, 0), pads])
    n, c, length = x.shape
    cout, cin_g, k = w.shape
    span = (k - 1) * dilation + 1
    out = np.zeros((n, cout, (length - span) // stride + 1))
    for o in range(cout):
        g = o // (cout // groups)
        for t in range(out.shape[2]):
            for ci in range(cin_g):
                for j in range(k):
                    out[:, o, t] += x[:, g * cin_g + ci, t * stride + j * dilation] * w[o, ci, j]
    return out + b[None, :, None]


# (length 10) pads worked out by hand from MIL's rule: total = s*ceil(L/s) - L + (k-1)*d + 1 - s,
# ``same`` puts the odd element after, ``same_lower`` before.
@pytest.mark.parametrize("k,stride,dilation,groups,pad_type,pads", [
    (3, 1, 1, 1, "valid", (0, 0)), (3, 1, 2, 2, "same", (2, 2)), (4, 1, 1, 1, "same", (1, 2)),
    (4, 1, 1, 4, "same_lower", (2, 1)), (3, 2, 1, 1, "same", (0, 1)), (3, 1, 3, 1, "custom", (1, 3))])
def test_conv_by_hand(k, stride, dilation, groups, pad_type, pads):
    from edgekit.runtime.coreml_ops import OPS

    x = RNG.normal(size=(2, 4, 10)).astype(np.float32)
    w = RNG.normal(size=(8, 4 // groups, k)).astype(np.float32)
    b = RNG.normal(size=8).astype(np.float32)
    got = OPS["conv"](x, w, b, strides=[stride], pad_type=pad_type, pad=list(pads), dilations=[dilation],
                      groups=groups)
    np.testing.assert_allclose(got, _naive_conv1d(x, w, b, stride, dilation, groups, pads), atol=1e-5)


def test_pools_by_hand():
    from edgekit.runtime.coreml_ops import OPS

    x = np.array([[[1.0, 5.0, -2.0, 4.0, 3.0]]], np.float32)
    np.testing.assert_array_equal(OPS["max_pool"](x, [2], [2], "valid"), [[[5.0, 4.0]]])
    np.testing.assert_array_equal(OPS["max_pool"](x, [2], [2], "same"), [[[5.0, 4.0, 3.0]]])
    np.testing.assert_allclose(OPS["avg_pool"](x, [2], [2], "same", exclude_padding_from_average=True),
                               [[[3.0, 1.0, 3.0]]])
    np.testing.assert_allclose(OPS["avg_pool"](x, [2], [2], "same"), [[[3.0, 1.0, 1.5]]])
    np.testing.assert_array_equal(OPS["pad"](x, [1, 2], mode="replicate"), [[[1, 1, 5, -2, 4, 3, 3, 3]]])
    with pytest.raises(RuntimeFailure, match="ceil_mode"):
        OPS["max_pool"](x, [2], [2], "valid", ceil_mode=True)


# ------------------------------------------------------------------ op table, by hand
def test_op_table_by_hand():
    from edgekit.runtime.coreml_ops import OPS

    x = np.array([[1.0, -2.0], [3.0, 0.5]], np.float32)
    np.testing.assert_allclose(OPS["matmul"](x, x, transpose_y=True), x @ x.T)
    np.testing.assert_allclose(OPS["rsqrt"](np.float32([4.0]), epsilon=0.0), [0.5])
    np.testing.assert_allclose(OPS["batch_norm"](x[..., None], np.float32([1, 2]), np.float32([4, 1]),
                                                 np.float32([2, 1]), np.float32([0, 1]), epsilon=0.0)[..., 0],
                               [[0.0, -3.0], [2.0, -0.5]])
    np.testing.assert_allclose(OPS["gelu"](np.float32([1.0])), [0.8413447], rtol=1e-6)
    np.testing.assert_allclose(OPS["gelu"](np.float32([1.0]), mode="TANH_APPROXIMATION"), [0.8411920],
                               rtol=1e-6)
    np.testing.assert_array_equal(OPS["select"](x > 0, x, np.float32(0)), [[1, 0], [3, 0.5]])
    np.testing.assert_array_equal(OPS["reshape"](x, np.array([0, -1])), x)
    assert OPS["expand_dims"](x, [0]).shape == (1, 2, 2) and OPS["squeeze"](x[None], [0]).shape == (2, 2)
    np.testing.assert_array_equal(OPS["slice_by_index"](x, [0, 1], [2, 2], [1, 1], [False, False],
                                                        [False, False], [False, True]), [-2.0, 0.5])
    np.testing.assert_allclose(OPS["softplus"](np.float32([0.0])), [np.log(2)], rtol=1e-6)

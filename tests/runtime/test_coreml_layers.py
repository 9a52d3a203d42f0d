"""The Core ML reference evaluator's layer ops (runtime/coreml_layers.py) against coremltools' own
semantics: its ``value_inference`` where the op has one (the op built on constants computes its value),
else the documented examples and TensorFlow's kernels that the TF frontend maps onto the op."""

from __future__ import annotations

import numpy as np
import pytest

ct = pytest.importorskip("coremltools", reason="coremltools (edgekit[coreml]) is not installed")
pytestmark = pytest.mark.filterwarnings("ignore")

from edgekit.runtime.coreml_ops import OPS  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 6)).astype(np.float32)
X4 = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
POS = RNG.uniform(0.1, 2.0, size=(3, 6)).astype(np.float32)
UNIT = RNG.uniform(-0.9, 0.9, size=(3, 6)).astype(np.float32)
BOOL_A, BOOL_B = X > 0, X > 0.5
CH = RNG.uniform(0.1, 1.0, size=3).astype(np.float32)

# (MIL op, keyword arguments): value_inference of coremltools is the oracle
CASES = [
    ("topk", dict(x=X, k=3)), ("topk", dict(x=X, k=2, axis=0, ascending=True)),
    ("argsort", dict(x=X, axis=-1)), ("argsort", dict(x=X, axis=0, ascending=True)),
    ("cumsum", dict(x=X, axis=1)), ("cumsum", dict(x=X, axis=0, reverse=True)),
    ("reduce_argmax", dict(x=X, axis=1)), ("reduce_argmax", dict(x=X4, axis=-1, keep_dims=True)),
    ("reduce_argmin", dict(x=X, axis=0)),
    ("gather", dict(x=X, indices=np.array([0, 2, 1], np.int32), axis=0)),
    ("gather", dict(x=X, indices=np.array([[5, 0], [1, 1]], np.int32), axis=1)),
    ("gather_along_axis", dict(x=X, indices=RNG.integers(0, 3, (2, 6)).astype(np.int32), axis=0)),
    ("split", dict(x=X, num_splits=2, axis=1)), ("split", dict(x=X, split_sizes=np.array([1, 5]), axis=1)),
    ("stack", dict(values=(X, POS), axis=1)), ("tile", dict(x=X, reps=np.array([2, 1]))),
    ("shape", dict(x=X4)), ("fill", dict(shape=np.array([2, 3], np.int32), value=1.5)),
    ("fill_like", dict(ref_tensor=X, value=2.0)),
    ("range_1d", dict(end=np.int32(9), start=np.int32(1), step=np.int32(3))),
    ("reverse", dict(x=X, axes=np.array([1]))), ("flatten2d", dict(x=X4, axis=2)),
    ("slice_by_size", dict(x=X4, begin=np.array([0, 1, 0, 2]), size=np.array([-1, 2, 3, -1]))),
    ("band_part", dict(x=X4, lower=np.int32(1), upper=np.int32(0))),
    ("layer_norm", dict(x=X4, axes=np.array([-1]), gamma=RNG.normal(size=5).astype(np.float32),
                        beta=RNG.normal(size=5).astype(np.float32), epsilon=np.float32(1e-3))),
    ("l2_norm", dict(x=X4)),
    ("reduce_prod", dict(x=X, axes=np.array([1]))), ("reduce_l1_norm", dict(x=X, axes=np.array([0]))),
    ("reduce_l2_norm", dict(x=X4, axes=np.array([1, 2]), keep_dims=True)),
    ("reduce_log_sum_exp", dict(x=X, axes=np.array([-1]))), ("reduce_sum_square", dict(x=X, axes=np.array([1]))),
    ("reduce_log_sum", dict(x=POS, axes=np.array([1]))),
    ("softsign", dict(x=X)), ("scaled_tanh", dict(x=X, alpha=np.float32(1.7), beta=np.float32(0.6))),
    ("clamped_relu", dict(x=X, alpha=np.float32(0.1), beta=np.float32(0.5))),
    ("thresholded_relu", dict(x=X, alpha=np.float32(0.3))), ("threshold", dict(x=X, alpha=np.float32(0.2))),
    ("linear_activation", dict(x=X, alpha=np.float32(2.0), beta=np.float32(-1.0))),
    ("prelu", dict(x=X4, alpha=CH)), ("softplus_parametric", dict(x=X4, alpha=CH, beta=CH[::-1].copy())),
    ("sin", dict(x=X)), ("cos", dict(x=X)), ("tan", dict(x=UNIT)), ("asin", dict(x=UNIT)), ("acos", dict(x=UNIT)),
    ("atan", dict(x=X)), ("sinh", dict(x=X)), ("cosh", dict(x=X)), ("atanh", dict(x=UNIT)), ("exp2", dict(x=X)),
    ("round", dict(x=X * 3)), ("sign", dict(x=X)), ("mod", dict(x=POS * 5, y=np.float32(1.5))),
    ("logical_and", dict(x=BOOL_A, y=BOOL_B)), ("logical_or", dict(x=BOOL_A, y=BOOL_B)),
    ("logical_xor", dict(x=BOOL_A, y=BOOL_B)), ("logical_not", dict(x=BOOL_A)),
    ("einsum", dict(values=(X4, RNG.normal(size=(2, 5, 4, 2)).astype(np.float32)), equation="nchw,nwhu->nchu")),
    ("non_zero", dict(x=np.where(X > 0, X, 0))),
    ("scaled_dot_product_attention", dict(query=X4, key=X4, value=X4)),
]


def _coremltools_value(op: str, kwargs: dict):
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import Function

    with Function({}):
        out = getattr(mb, op)(**kwargs)
        return tuple(v.val for v in out) if isinstance(out, (list, tuple)) else out.val


@pytest.mark.parametrize("op,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_coremltools_value_inference(op, kwargs):
    want = _coremltools_value(op, kwargs)
    got = OPS[op](**kwargs)
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
    for g, w in zip(got if isinstance(want, tuple) else (got,), want if isinstance(want, tuple) else (want,),
                    strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, f"{op}: shape {g.shape} vs coremltools {w.shape}"
        if w.dtype.kind in "iub":
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g.astype(np.float64), w, rtol=1e-5, atol=1e-6)


def test_cumsum_exclusive_by_hand():
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(OPS["cumsum"](x, axis=1, exclusive=True), [[0, 1, 3]])
    np.testing.assert_array_equal(OPS["cumsum"](x, axis=1, exclusive=True, reverse=True), [[5, 3, 0]])


def test_topk_ties_take_the_lower_index_first():
    values, idx = OPS["topk"](np.array([[1.0, 3.0, 3.0, 2.0]], np.float32), k=2)
    np.testing.assert_array_equal(idx, [[1, 2]])


def test_every_op_is_coremltools_op():
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    assert set(OPS) <= set(SSAOpRegistry.core_ops), sorted(set(OPS) - set(SSAOpRegistry.core_ops))


# ---------------------------------------------------------------- ops without value_inference
def test_bilinear_grids_from_the_docs():
    """upsample_bilinear's documented grid points for Xin = 2 (coremltools' image_resizing docs)."""
    x = np.array([0.0, 1.0], np.float32).reshape(1, 1, 1, 2)
    up = OPS["upsample_bilinear"]
    np.testing.assert_allclose(up(x, 1, 2.5, align_corners=False)[0, 0, 0], [0, 0.1, 0.5, 0.9, 1], atol=1e-6)
    np.testing.assert_allclose(up(x, 1, 2.5, align_corners=True)[0, 0, 0], [0, 0.25, 0.5, 0.75, 1], atol=1e-6)
    np.testing.assert_allclose(up(x, 1, 3, align_corners=False)[0, 0, 0], [0, 0, 1 / 3, 2 / 3, 1, 1], atol=1e-6)
    np.testing.assert_allclose(up(x, 1, 3, align_corners=True)[0, 0, 0], [0, 0.2, 0.4, 0.6, 0.8, 1], atol=1e-6)
    rb = OPS["resize_bilinear"]
    np.testing.assert_allclose(rb(x, 1, 5, "DEFAULT")[0, 0, 0], [0, 0.4, 0.8, 1, 1], atol=1e-6)
    np.testing.assert_allclose(rb(x, 1, 5, "UNALIGN_CORNERS")[0, 0, 0], [0, 0.1, 0.5, 0.9, 1], atol=1e-6)
    np.testing.assert_allclose(rb(x, 1, 5, "STRICT_ALIGN_CORNERS")[0, 0, 0], [0, 0.25, 0.5, 0.75, 1], atol=1e-6)


def _tf():
    return pytest.importorskip("tensorflow", reason="TensorFlow's kernels are the reference for these ops")


@pytest.mark.parametrize("align,half,h,w", [(False, True, 8, 10), (True, False, 7, 9), (False, False, 8, 10)])
def test_upsample_bilinear_matches_tensorflow_resize(align, half, h, w):
    tfm = _tf()
    x = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)  # NHWC for TF
    want = tfm.raw_ops.ResizeBilinear(images=x, size=[h, w], align_corners=align, half_pixel_centers=half).numpy()
    if h % 4 == 0 and w % 5 == 0:
        got = OPS["upsample_bilinear"](x.transpose(0, 3, 1, 2), h / 4, w / 5, align_corners=align,
                                       half_pixel_centers=half)
    else:
        mode = "STRICT_ALIGN_CORNERS" if align else ("UNALIGN_CORNERS" if half else "DEFAULT")
        got = OPS["resize_bilinear"](x.transpose(0, 3, 1, 2), h, w, mode)
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), want, atol=1e-5)


def test_nearest_neighbor_matches_tensorflow():
    tfm = _tf()
    x = RNG.normal(size=(1, 3, 4, 2)).astype(np.float32)
    want = tfm.raw_ops.ResizeNearestNeighbor(images=x, size=[6, 8]).numpy()
    got = OPS["upsample_nearest_neighbor"](x.transpose(0, 3, 1, 2), 2, 2).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got, want)
    got = OPS["resize_nearest_neighbor"](x.transpose(0, 3, 1, 2), 6, 8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k,stride,padding", [(3, 2, "SAME"), (2, 2, "VALID"), (3, 1, "SAME"), (4, 2, "SAME"),
                                              (3, 3, "VALID")])
def test_conv_transpose_matches_tensorflow(k, stride, padding):
    tfm = _tf()
    n, hin, win, cin, cout = 2, 5, 4, 3, 4
    x = RNG.normal(size=(n, hin, win, cin)).astype(np.float32)
    w = RNG.normal(size=(k, k, cout, cin)).astype(np.float32)  # TF: (kh, kw, out, in)
    if padding == "SAME":
        out_hw = (hin * stride, win * stride)
    else:
        out_hw = ((hin - 1) * stride + k, (win - 1) * stride + k)
    want = tfm.nn.conv2d_transpose(x, w, [n, *out_hw, cout], strides=stride, padding=padding).numpy()
    got = OPS["conv_transpose"](x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), strides=[stride, stride],
                                pad_type=padding.lower(), output_shape=[n, cout, *out_hw])
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), want, atol=1e-4)


def test_depthwise_conv_fast_path_matches_grouped_loop():
    x = RNG.normal(size=(2, 6, 7, 7)).astype(np.float32)
    w = RNG.normal(size=(12, 1, 3, 3)).astype(np.float32)  # depth multiplier 2
    b = RNG.normal(size=12).astype(np.float32)
    got = OPS["conv"](x, w, b, strides=[1, 1], pad_type="same", groups=6)
    parts = [OPS["conv"](x[:, i:i + 1], w[2 * i:2 * i + 2], b[2 * i:2 * i + 2], strides=[1, 1], pad_type="same")
             for i in range(6)]
    np.testing.assert_allclose(got, np.concatenate(parts, axis=1), atol=1e-5)


def test_depth_to_space_and_back_match_tensorflow():
    tfm = _tf()
    x = RNG.normal(size=(1, 2, 3, 8)).astype(np.float32)
    want = tfm.nn.depth_to_space(x, 2).numpy()
    got = OPS["depth_to_space"](x.transpose(0, 3, 1, 2), 2).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got, want)
    back = OPS["space_to_depth"](got.transpose(0, 3, 1, 2), 2).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(back, x)

"""More MIL operations for the Core ML reference evaluator: what Keras' common layers lower to.

Listed from coremltools 9.0's MIL op registry (``SSAOpRegistry.core_ops``) against the layers
of ``keras.layers`` converted through the TensorFlow frontend: transposed convolutions
(Conv*DTranspose), resizing (UpSampling2D, Resizing: ``upsample_*``, ``resize_*``), top-k,
cumulative sums, arg-max/min, layer/instance/L2 normalisation, gathers (Embedding), splits,
tiles, stacks, the parametric activations, trigonometry, logical ops and the reductions.
Each follows the op's definition in ``coremltools/converters/mil/mil/ops/defs`` (argument
names and defaults; where coremltools has a ``value_inference`` the tests compare with it).
Arithmetic runs in float32 (fp16 inputs are widened), like :mod:`edgekit.runtime.coreml_ops`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from edgekit.core.errors import RuntimeFailure


def _f(x):
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _axis(axis, ndim: int) -> int:
    return int(axis) % ndim


def _axes(axes, ndim):
    if axes is None:
        return tuple(range(ndim))
    return tuple(int(a) % ndim for a in np.atleast_1d(axes))


# ----------------------------------------------------------------------------- convolution
def conv_transpose(x, weight, bias=None, pad=None, output_shape=None, pad_type="valid", strides=None,
                   dilations=None, groups=1):
    """Transposed convolution: every input element scatters ``weight`` into the output at
    ``i * stride + k * dilation``; the full result is then cropped by ``pad`` (``custom``), to
    ``output_shape`` or to ``D_in * stride`` (``same``: the odd element is cropped at the end, as
    TensorFlow's Conv2DBackpropInput does)."""
    x, w = _f(x), _f(weight)
    nsp = x.ndim - 2
    g = int(groups)
    strides = [1] * nsp if strides is None else [int(v) for v in np.atleast_1d(strides)]
    dilations = [1] * nsp if dilations is None else [int(v) for v in np.atleast_1d(dilations)]
    kernel = w.shape[2:]
    cin, cout_g = x.shape[1], w.shape[1]
    full = [(d - 1) * s + (k - 1) * dl + 1 for d, s, k, dl in zip(x.shape[2:], strides, kernel, dilations,
                                                                  strict=True)]
    y = np.zeros((x.shape[0], cout_g * g, *full), dtype=np.float32)
    cin_g = cin // g
    for gi in range(g):
        xs = x[:, gi * cin_g:(gi + 1) * cin_g]
        for kk in np.ndindex(*kernel):
            contrib = np.tensordot(xs, w[gi * cin_g:(gi + 1) * cin_g, :, *kk], axes=([1], [0]))  # (N, *D, Co)
            contrib = np.moveaxis(contrib, -1, 1)
            idx = tuple(slice(k * dl, k * dl + (d - 1) * s + 1, s)
                        for k, dl, d, s in zip(kk, dilations, x.shape[2:], strides, strict=True))
            y[(slice(None), slice(gi * cout_g, (gi + 1) * cout_g), *idx)] += contrib
    if output_shape is not None:
        want = [int(v) for v in np.atleast_1d(output_shape)][-nsp:]
    elif pad_type == "same":
        want = [d * s for d, s in zip(x.shape[2:], strides, strict=True)]
    else:
        want = None
    crops = []
    if pad_type == "custom" and pad is not None:
        p = [int(v) for v in np.atleast_1d(pad)]
        crops = [(p[2 * i], full[i] - p[2 * i + 1]) for i in range(nsp)]
    elif want is not None:
        for f, t in zip(full, want, strict=True):
            total = max(0, f - t)
            crops.append((total // 2, total // 2 + t))
    if crops:
        y = y[(slice(None), slice(None), *(slice(a, b) for a, b in crops))]
    if bias is not None:
        y = y + _f(bias).reshape(1, -1, *[1] * nsp)
    return y


# ----------------------------------------------------------------------------- resizing
def _grid(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """Sample positions of the 1-D grid ``[0, n_in - 1]`` (resize_bilinear's ``sampling_mode``)."""
    i = np.arange(n_out, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if n_out == 1:
            g = np.full(1, (n_in - 1) / 2.0 if mode == "ALIGN_CORNERS" else 0.0)
        else:
            g = i * (n_in - 1) / (n_out - 1)
    elif mode == "DEFAULT":
        g = i * (n_in - n_in / n_out) / (n_out - 1) if n_out > 1 else np.zeros(1)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, n_in - 1) / n_out
        g = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":
        spacing = n_in / n_out
        g = i * spacing + 0.5 * spacing - 0.5
    elif mode == "ASYMMETRIC":  # align_corners=False, half_pixel_centers=False (TF's legacy resize)
        g = i * n_in / n_out
    else:
        raise RuntimeFailure("Core ML reference evaluator: unknown resize sampling mode", got=mode,
                             expected=["STRICT_ALIGN_CORNERS", "ALIGN_CORNERS", "DEFAULT", "OFFSET_CORNERS",
                                       "UNALIGN_CORNERS"])
    return np.clip(g, 0, n_in - 1)


def _linear_1d(x, axis: int, n_out: int, mode: str):
    n_in = x.shape[axis]
    g = _grid(n_in, n_out, mode)
    lo = np.floor(g).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (g - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = n_out
    frac = frac.reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


def _bilinear(x, h: int, w: int, mode: str):
    x = _f(x)
    return _linear_1d(_linear_1d(x, x.ndim - 2, h, mode), x.ndim - 1, w, mode)


def _nearest(x, h: int, w: int, half_pixel: bool = False):
    x = np.asarray(x)

    def idx(n_in, n_out):
        i = np.arange(n_out, dtype=np.float64)
        pos = (i + 0.5) * n_in / n_out if half_pixel else i * n_in / n_out
        return np.minimum(np.floor(pos).astype(int), n_in - 1)

    x = np.take(x, idx(x.shape[-2], h), axis=x.ndim - 2)
    return np.take(x, idx(x.shape[-1], w), axis=x.ndim - 1)


def upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=True,
                      half_pixel_centers=None):
    """Scale the last two axes; the scale is recomputed from the output size (floor(in * scale))."""
    h = int(math.floor(np.shape(x)[-2] * float(scale_factor_height)))
    w = int(math.floor(np.shape(x)[-1] * float(scale_factor_width)))
    half = (not bool(align_corners)) if half_pixel_centers is None else bool(half_pixel_centers)
    mode = "ALIGN_CORNERS" if align_corners else ("UNALIGN_CORNERS" if half else "ASYMMETRIC")
    if align_corners and half:
        raise RuntimeFailure("Core ML reference evaluator: upsample_bilinear with align_corners and "
                             "half_pixel_centers both true is undefined")
    return _bilinear(x, h, w, mode)


def resize_bilinear(x, target_size_height=1, target_size_width=1, sampling_mode="DEFAULT"):
    return _bilinear(x, int(target_size_height), int(target_size_width), str(sampling_mode))


def upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    h = int(math.floor(np.shape(x)[-2] * float(scale_factor_height)))
    w = int(math.floor(np.shape(x)[-1] * float(scale_factor_width)))
    return _nearest(x, h, w)


def resize_nearest_neighbor(x, target_size_height, target_size_width):
    return _nearest(x, int(target_size_height), int(target_size_width))


def resize(x, shape, resized_dims, interpolation_mode="LINEAR", sampling_mode="DEFAULT"):
    """iOS17 ``resize`` of the last ``resized_dims`` axes (2 here: H, W) to ``shape``'s last ones."""
    shape = [int(v) for v in np.atleast_1d(shape)]
    k = int(resized_dims)
    if k != 2:
        raise RuntimeFailure("Core ML reference evaluator: resize supports resized_dims=2 only", got=k)
    h, w = shape[-2] or np.shape(x)[-2], shape[-1] or np.shape(x)[-1]
    if interpolation_mode == "NEAREST_NEIGHBOR":
        return _nearest(x, h, w)
    return _bilinear(x, h, w, str(sampling_mode))


def _depth_to_space(x, block_size):
    x = np.asarray(x)
    n, c, h, w = x.shape
    b = int(block_size)
    y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)  # DCR order, as TF
    return y.reshape(n, c // (b * b), h * b, w * b)


def _space_to_depth(x, block_size):
    x = np.asarray(x)
    n, c, h, w = x.shape
    b = int(block_size)
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def _pixel_shuffle(x, upscale_factor):
    x = np.asarray(x)
    n, c, h, w = x.shape
    r = int(upscale_factor)
    y = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)  # CRD order, as PyTorch
    return y.reshape(n, c // (r * r), h * r, w * r)


def _crop(x, crop_height, crop_width):
    ch, cw = [int(v) for v in np.atleast_1d(crop_height)], [int(v) for v in np.atleast_1d(crop_width)]
    x = np.asarray(x)
    return x[..., ch[0]:x.shape[-2] - ch[1], cw[0]:x.shape[-1] - cw[1]]


def _space_to_batch(x, block_shape, paddings):
    x = np.asarray(x)
    bs = [int(v) for v in np.atleast_1d(block_shape)]
    p = np.asarray(paddings, dtype=int).reshape(-1, 2)
    x = np.pad(x, [(0, 0), (0, 0), *map(tuple, p)])
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // bs[0], bs[0], w // bs[1], bs[1]).transpose(3, 5, 0, 1, 2, 4)
    return y.reshape(n * bs[0] * bs[1], c, h // bs[0], w // bs[1])


def _batch_to_space(x, block_shape, crops):
    x = np.asarray(x)
    bs = [int(v) for v in np.atleast_1d(block_shape)]
    cr = np.asarray(crops, dtype=int).reshape(-1, 2)
    nb, c, h, w = x.shape
    n = nb // (bs[0] * bs[1])
    y = x.reshape(bs[0], bs[1], n, c, h, w).transpose(2, 3, 4, 0, 5, 1).reshape(n, c, h * bs[0], w * bs[1])
    return y[:, :, cr[0, 0]:h * bs[0] - cr[0, 1], cr[1, 0]:w * bs[1] - cr[1, 1]]


# ----------------------------------------------------------------------------- indexing
def topk(x, k=1, axis=-1, ascending=False, sort=True, return_indices=True, output_indices_dtype="int32"):
    """Top ``k`` along ``axis``, ties to the lower index first (TensorFlow's top_k order)."""
    x = np.asarray(x)
    ax = _axis(axis, x.ndim)
    key = _f(x) if ascending else -_f(x)
    idx = np.argsort(key, axis=ax, kind="stable")
    idx = np.take(idx, np.arange(int(k)), axis=ax)
    values = np.take_along_axis(x, idx, axis=ax)
    return (values, idx.astype(str(output_indices_dtype))) if return_indices else values


def argsort(x, axis=-1, ascending=False):
    x = _f(x)
    return np.argsort(x if ascending else -x, axis=_axis(axis, x.ndim), kind="stable").astype(np.int32)


def cumsum(x, axis=0, exclusive=False, reverse=False):
    x = _f(x)
    ax = _axis(axis, x.ndim)
    data = np.flip(x, axis=ax) if reverse else x
    out = np.cumsum(data, axis=ax, dtype=data.dtype)
    if exclusive:
        out = np.concatenate([np.zeros_like(np.take(out, [0], axis=ax)), np.take(out, np.arange(out.shape[ax] - 1),
                                                                                 axis=ax)], axis=ax)
    return np.flip(out, axis=ax) if reverse else out


def _arg(fn):
    def op(x, axis=-1, keep_dims=False):
        x = _f(x)
        out = fn(x, axis=_axis(axis, x.ndim)).astype(np.int32)
        return np.expand_dims(out, _axis(axis, x.ndim)) if keep_dims else out
    return op


def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    x, ind = np.asarray(x), np.asarray(indices).astype(np.int64)
    ax = _axis(axis, x.ndim)
    ind = np.where(ind < 0, ind + x.shape[ax], ind)
    if int(batch_dims) == 0:
        return np.take(x, ind, axis=ax)
    b = int(batch_dims)
    out = [gather(x[i], ind[i], axis=ax - 1, batch_dims=b - 1) for i in range(x.shape[0])]
    return np.stack(out)


def gather_along_axis(x, indices, axis=0, validate_indices=False):
    x, ind = np.asarray(x), np.asarray(indices).astype(np.int64)
    ax = _axis(axis, x.ndim)
    return np.take_along_axis(x, np.where(ind < 0, ind + x.shape[ax], ind), axis=ax)


def gather_nd(x, indices, batch_dims=0, validate_indices=False):
    x, ind = np.asarray(x), np.asarray(indices).astype(np.int64)
    if int(batch_dims):
        return np.stack([gather_nd(x[i], ind[i], int(batch_dims) - 1) for i in range(x.shape[0])])
    return x[tuple(np.moveaxis(ind, -1, 0))]


def split(x, num_splits=None, split_sizes=None, axis=0):
    x = np.asarray(x)
    ax = _axis(axis, x.ndim)
    if split_sizes is not None:
        cuts = np.cumsum([int(s) for s in np.atleast_1d(split_sizes)])[:-1]
        return tuple(np.split(x, cuts, axis=ax))
    return tuple(np.split(x, int(num_splits), axis=ax))


def one_hot(indices, one_hot_vector_size, axis=-1, on_value=1, off_value=0):
    ind = np.asarray(indices).astype(np.int64)
    depth = int(one_hot_vector_size)
    hot = (ind[..., None] == np.arange(depth)).astype(np.float32)
    out = np.where(hot > 0, np.float32(on_value), np.float32(off_value))
    ax = _axis(axis, out.ndim)
    return np.moveaxis(out, -1, ax)


def band_part(x, lower=-1, upper=-1):
    x = np.asarray(x)
    m, n = x.shape[-2:]
    i, j = np.arange(m)[:, None], np.arange(n)[None, :]
    keep = ((int(lower) < 0) | (i - j <= int(lower))) & ((int(upper) < 0) | (j - i <= int(upper)))
    return np.where(keep, x, np.zeros((), x.dtype))


def slice_by_size(x, begin, size):
    x = np.asarray(x)
    b = [int(v) for v in np.atleast_1d(begin)]
    s = [int(v) for v in np.atleast_1d(size)]
    return x[tuple(slice(bi, None if si == -1 else bi + si) for bi, si in zip(b, s, strict=True))]


def _layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    x = _f(x)
    ax = _axes(axes, x.ndim)
    shape = [x.shape[i] if i in ax else 1 for i in range(x.ndim)]
    num = x - np.mean(x, axis=ax, keepdims=True)
    out = num / np.sqrt(np.mean(np.square(num), axis=ax, keepdims=True) + np.float32(epsilon))
    if gamma is not None:
        out = out * _f(gamma).reshape(shape)
    if beta is not None:
        out = out + _f(beta).reshape(shape)
    return out


def _instance_norm(x, gamma=None, beta=None, epsilon=1e-5):
    x = _f(x)
    ax = tuple(range(2, x.ndim))
    shape = [1, -1] + [1] * (x.ndim - 2)
    num = x - x.mean(axis=ax, keepdims=True)
    out = num / np.sqrt(np.square(num).mean(axis=ax, keepdims=True) + np.float32(epsilon))
    if gamma is not None:
        out = out * _f(gamma).reshape(shape)
    if beta is not None:
        out = out + _f(beta).reshape(shape)
    return out


def _l2_norm(x, epsilon=1e-6):
    """x / sqrt(sum(x^2) + eps) over the last three axes (everything when rank <= 3)."""
    x = _f(x)
    lead = max(0, x.ndim - 3)
    flat = x.reshape(*x.shape[:lead], -1)
    s = np.sum(flat * flat, axis=-1, keepdims=True) + np.float32(epsilon)
    return (flat / np.sqrt(s)).reshape(x.shape)


def _lrn(x, size, alpha=1e-4, beta=0.75, k=1.0):
    x = _f(x)
    sq = np.square(x)
    n = int(size)
    pad = [(0, 0)] * x.ndim
    pad[1] = ((n - 1) // 2, n // 2)
    padded = np.pad(sq, pad)
    acc = sum(padded[:, i:i + x.shape[1]] for i in range(n))
    return x / np.power(np.float32(k) + np.float32(alpha) / n * acc, np.float32(beta))


def _sdpa(query, key, value, attn_mask=None):
    q, k, v = _f(query), _f(key), _f(value)
    s = q @ np.swapaxes(k, -1, -2) / np.float32(math.sqrt(q.shape[-1]))
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        s = np.where(m, s, -np.inf) if m.dtype == np.bool_ else s + _f(m)
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def _channel(p, ndim):
    p = _f(p)
    return p.reshape(1, -1, *[1] * (ndim - 2)) if p.ndim == 1 and ndim > 2 else p


def _reduce(fn):
    def op(x, axes=None, keep_dims=False):
        x = _f(x)
        return fn(x, axis=_axes(axes, x.ndim), keepdims=bool(keep_dims))
    return op


def _log_sum_exp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _u(fn: Callable) -> Callable:
    return lambda x: fn(_f(x))


#: MIL op type -> numpy implementation (merged into :data:`edgekit.runtime.coreml_ops.OPS`).
LAYER_OPS: dict[str, Callable[..., Any]] = {
    "conv_transpose": conv_transpose,
    "upsample_bilinear": upsample_bilinear, "resize_bilinear": resize_bilinear,
    "upsample_nearest_neighbor": upsample_nearest_neighbor, "resize_nearest_neighbor": resize_nearest_neighbor,
    "resize": resize, "depth_to_space": _depth_to_space, "space_to_depth": _space_to_depth,
    "pixel_shuffle": _pixel_shuffle, "crop": _crop, "space_to_batch": _space_to_batch,
    "batch_to_space": _batch_to_space,
    "topk": topk, "argsort": argsort, "cumsum": cumsum,
    "reduce_argmax": _arg(np.argmax), "reduce_argmin": _arg(np.argmin),
    "gather": gather, "gather_along_axis": gather_along_axis, "gather_nd": gather_nd,
    "split": split, "one_hot": one_hot, "band_part": band_part, "slice_by_size": slice_by_size,
    "stack": lambda values, axis: np.stack([np.asarray(v) for v in values], axis=int(axis)),
    "tile": lambda x, reps: np.tile(np.asarray(x), [int(r) for r in np.atleast_1d(reps)]),
    "shape": lambda x: np.asarray(np.shape(x), dtype=np.int32),
    "fill": lambda shape, value=0.0: np.full([int(s) for s in np.atleast_1d(shape)], value),
    "fill_like": lambda ref_tensor, value=0.0: np.full(np.shape(ref_tensor), value),
    "range_1d": lambda end, start, step: np.arange(start, end, step),
    "reverse": lambda x, axes=None: np.flip(np.asarray(x), axis=_axes(axes, np.ndim(x))),
    "flatten2d": lambda x, axis=1: np.reshape(x, (int(np.prod(np.shape(x)[:_axis(axis, np.ndim(x))])), -1)),
    "reshape_like": lambda x, ref_tensors, begins, ends, end_masks: np.reshape(
        x, [d for r, b, e, m in zip(ref_tensors, begins, ends, end_masks, strict=True)
            for d in np.shape(r)[int(b): None if m else int(e)]]),
    "non_zero": lambda x: np.transpose(np.nonzero(np.asarray(x))).astype(np.int32),
    "layer_norm": _layer_norm, "instance_norm": _instance_norm, "l2_norm": _l2_norm,
    "local_response_norm": _lrn, "scaled_dot_product_attention": _sdpa,
    "einsum": lambda values, equation: np.einsum(str(equation), *[_f(v) for v in values]),
    "reduce_prod": _reduce(np.prod),
    "reduce_l1_norm": _reduce(lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims)),
    "reduce_l2_norm": _reduce(lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))),
    "reduce_sum_square": _reduce(lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims)),
    "reduce_log_sum": _reduce(lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims))),
    "reduce_log_sum_exp": _reduce(_log_sum_exp),
    "softsign": _u(lambda x: x / (1 + np.abs(x))),
    "scaled_tanh": lambda x, alpha=1.0, beta=1.0: np.float32(alpha) * np.tanh(np.float32(beta) * _f(x)),
    "clamped_relu": lambda x, alpha=0.0, beta=6.0: np.minimum(
        np.where(_f(x) >= 0, _f(x), np.float32(alpha) * _f(x)), np.float32(beta)),
    "thresholded_relu": lambda x, alpha=1.0: np.where(_f(x) > np.float32(alpha), _f(x), np.float32(0)),
    "threshold": lambda x, alpha: np.maximum(_f(x), np.float32(alpha)),
    "linear_activation": lambda x, alpha=1.0, beta=0.0: np.float32(alpha) * _f(x) + np.float32(beta),
    "prelu": lambda x, alpha: np.where(_f(x) >= 0, _f(x), _channel(alpha, np.ndim(x)) * _f(x)),
    "softplus_parametric": lambda x, alpha, beta: _channel(alpha, np.ndim(x)) * np.logaddexp(
        np.float32(0), _channel(beta, np.ndim(x)) * _f(x)),
    "sin": _u(np.sin), "cos": _u(np.cos), "tan": _u(np.tan), "asin": _u(np.arcsin), "acos": _u(np.arccos),
    "atan": _u(np.arctan), "sinh": _u(np.sinh), "cosh": _u(np.cosh), "atanh": _u(np.arctanh),
    "exp2": _u(np.exp2), "round": _u(np.round), "sign": _u(np.sign),
    "mod": lambda x, y: np.mod(_f(x), _f(y)),
    "logical_and": lambda x, y: np.logical_and(x, y), "logical_or": lambda x, y: np.logical_or(x, y),
    "logical_xor": lambda x, y: np.logical_xor(x, y), "logical_not": lambda x: np.logical_not(x),
}

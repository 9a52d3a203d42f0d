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

from edgekit.runtime.coreml_image import (
    _batch_to_space,
    _crop,
    _depth_to_space,
    _pixel_shuffle,
    _space_to_batch,
    _space_to_depth,
    conv_transpose,
    resize,
    resize_bilinear,
    resize_nearest_neighbor,
    upsample_bilinear,
    upsample_nearest_neighbor,
)


def _f(x):
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _axis(axis, ndim: int) -> int:
    return int(axis) % ndim


def _axes(axes, ndim):
    if axes is None:
        return tuple(range(ndim))
    return tuple(int(a) % ndim for a in np.atleast_1d(axes))


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

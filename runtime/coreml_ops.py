"""A numpy reference evaluator for Core ML ML Programs (where Core ML itself cannot run).

The ``.mlpackage``'s program is loaded back as a MIL program by coremltools
(``converters.mil.frontend.milproto``); :class:`MilEvaluator` then walks its operations
in order, in numpy, keeping the program's own dtypes: every op's result is stored in the
dtype the program declares for it (fp16 where the program computes in fp16, after the
``cast`` ops and fp16 ``const`` weights a ``compute_precision=FLOAT16`` conversion inserts).
Arithmetic inside one op runs in float32 and is rounded to the declared dtype on output,
the way Core ML's fp16 CPU/GPU kernels store fp16 while accumulating in wider precision.

Only the operations in :data:`OPS` are implemented (what dense and 1-D/2-D convolutional Keras
models and the usual elementwise/shape ops produce, plus :mod:`edgekit.runtime.coreml_layers`:
what Keras' common layers lower to); any other op is refused at load time with
:class:`~edgekit.core.errors.Unverifiable` naming it (verify reports such a file ``unverified``).
Each entry follows the MIL op's definition in
``coremltools/converters/mil/mil/ops/defs`` (argument names and defaults).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from edgekit.core.errors import RuntimeFailure, Unverifiable
from edgekit.runtime.coreml_layers import LAYER_OPS

MIL_DTYPES = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8,
              "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
              "int64": np.int64, "bool": np.bool_}


def _f(x):
    """Work copy in float32 for fp16 inputs (float32/float64/int stay as they are)."""
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _axes(axes, ndim):
    if axes is None:
        return tuple(range(ndim))
    return tuple(int(a) % ndim for a in np.atleast_1d(axes))


def _reshape(x, shape):
    shape = [int(s) for s in np.atleast_1d(shape)]
    shape = [x.shape[i] if s == 0 and len(shape) == x.ndim else s for i, s in enumerate(shape)]
    return np.reshape(x, shape)


def _softmax(x, axis=-1):
    x = _f(x)
    e = np.exp(x - np.max(x, axis=int(axis), keepdims=True))
    return e / np.sum(e, axis=int(axis), keepdims=True)


def _erf(x):
    # Abramowitz-Stegun 7.1.26 is too coarse for fp32 parity; use math.erf per element.
    import math

    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def _gelu(x, mode="EXACT"):
    x = _f(x)
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1 + np.exp(-1.702 * x))
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    x = _f(x)
    shape = [1, -1] + [1] * (x.ndim - 2)  # channel axis 1 (NC*), as MIL defines it
    out = (x - _f(mean).reshape(shape)) / np.sqrt(_f(variance).reshape(shape) + np.float32(epsilon))
    if gamma is not None:
        out = out * _f(gamma).reshape(shape)
    if beta is not None:
        out = out + _f(beta).reshape(shape)
    return out


def _reduce(fn):
    def op(x, axes=None, keep_dims=False):
        x = _f(x)
        return fn(x, axis=_axes(axes, x.ndim), keepdims=bool(keep_dims))
    return op


def _concat(values, axis, interleave=False):
    if interleave:
        raise RuntimeFailure("Core ML reference evaluator: concat with interleave=True is not implemented")
    arrays = [np.asarray(v) for v in values]
    if any(a.ndim == 0 for a in arrays):  # scalars concatenate as 1-element vectors (packed shapes)
        arrays = [np.atleast_1d(a) for a in arrays]
    return np.concatenate(arrays, axis=int(axis))


def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    idx = []
    n = x.ndim
    stride = np.ones(n, int) if stride is None else np.atleast_1d(stride)
    for i in range(n):
        b = None if begin_mask is not None and begin_mask[i] else int(begin[i])
        e = None if end_mask is not None and end_mask[i] else int(end[i])
        squeeze = squeeze_mask is not None and squeeze_mask[i]
        idx.append(int(begin[i]) if squeeze else slice(b, e, int(stride[i])))
    return x[tuple(idx)]


def _pads(spatial, kernel, strides, dilations, pad_type, pad) -> list[tuple[int, int]]:
    """(before, after) per spatial axis, as MIL's ``aggregated_pad`` (``same`` = TF's SAME:
    the odd element goes after; ``same_lower``: before)."""
    if pad_type == "valid":
        return [(0, 0)] * len(spatial)
    if pad_type == "custom":
        p = [int(v) for v in np.atleast_1d(pad)]
        return [(p[2 * i], p[2 * i + 1]) for i in range(len(spatial))]
    if pad_type not in ("same", "same_lower"):
        raise RuntimeFailure("Core ML reference evaluator: unknown pad_type", got=pad_type,
                             expected=["valid", "custom", "same", "same_lower"])
    out = []
    for n, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        eff = (k - 1) * d + 1
        total = max(0, s * -(-n // s) - n + eff - s)
        small, big = total // 2, total - total // 2
        out.append((small, big) if pad_type == "same" else (big, small))
    return out


def _windows(x, kernel, strides, dilations, pads, fill):
    """(N, C, *out, *kernel) view of the padded input's sliding windows."""
    nsp = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=fill)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    v = np.lib.stride_tricks.sliding_window_view(xp, eff, axis=tuple(range(2, 2 + nsp)))
    v = v[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
    return v[(Ellipsis, *(slice(None, None, d) for d in dilations))]


def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    x, w = _f(x), _f(weight)
    nsp = x.ndim - 2
    kernel = w.shape[2:]
    strides = [1] * nsp if strides is None else [int(v) for v in np.atleast_1d(strides)]
    dilations = [1] * nsp if dilations is None else [int(v) for v in np.atleast_1d(dilations)]
    v = _windows(x, kernel, strides, dilations, _pads(x.shape[2:], kernel, strides, dilations, pad_type, pad),
                 0)
    g = int(groups)
    if g > 1 and g == x.shape[1] and w.shape[1] == 1:  # depthwise: one einsum, not one tensordot per channel
        mult = w.shape[0] // g
        sp = "hwd"[:nsp]
        ks = "ijk"[:nsp]
        y = np.einsum(f"nc{sp}{ks},cm{ks}->ncm{sp}", v, w.reshape(g, mult, *kernel), optimize=True)
        y = y.reshape(x.shape[0], g * mult, *y.shape[3:])
        return y if bias is None else y + _f(bias).reshape(1, -1, *[1] * nsp)
    cin, cout = x.shape[1] // g, w.shape[0] // g
    k_axes = list(range(2 + nsp, 2 + 2 * nsp))
    parts = [np.moveaxis(np.tensordot(v[:, i * cin:(i + 1) * cin], w[i * cout:(i + 1) * cout],
                                      axes=([1, *k_axes], [1, *range(2, 2 + nsp)])), -1, 1)
             for i in range(g)]
    y = np.concatenate(parts, axis=1)
    return y if bias is None else y + _f(bias).reshape(1, -1, *[1] * nsp)


def _pool(kind: str):
    def op(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False,
           exclude_padding_from_average=False):
        if ceil_mode:
            raise RuntimeFailure(f"Core ML reference evaluator: {kind}_pool with ceil_mode=True is not "
                                 "implemented")
        x = _f(x)
        nsp = x.ndim - 2
        kernel = [int(k) for k in np.atleast_1d(kernel_sizes)]
        strides = [1] * nsp if strides is None else [int(v) for v in np.atleast_1d(strides)]
        ones = [1] * nsp
        pads = _pads(x.shape[2:], kernel, strides, ones, pad_type, pad)
        axes = tuple(range(-nsp, 0))
        if kind == "max":
            return _windows(x, kernel, strides, ones, pads, -np.inf).max(axis=axes)
        total = _windows(x, kernel, strides, ones, pads, 0).sum(axis=axes)
        if exclude_padding_from_average:
            count = _windows(np.ones((1, 1, *x.shape[2:]), x.dtype), kernel, strides, ones, pads, 0)
            return total / count.sum(axis=axes)
        return total / np.prod(kernel)
    return op


def _pad(x, pad, mode="constant", constant_val=0.0):
    p = [int(v) for v in np.atleast_1d(pad)]
    k = len(p) // 2  # pairs cover the last k axes
    widths = [(0, 0)] * (np.ndim(x) - k) + [(p[2 * i], p[2 * i + 1]) for i in range(k)]
    if mode == "constant":
        return np.pad(_f(x), widths, constant_values=constant_val)
    modes = {"reflect": "reflect", "replicate": "edge"}
    if mode not in modes:
        raise RuntimeFailure("Core ML reference evaluator: unknown pad mode", got=mode,
                             expected=["constant", *modes])
    return np.pad(_f(x), widths, mode=modes[mode])


def _unary(fn: Callable) -> Callable:
    return lambda x: fn(_f(x))


def _binary(fn: Callable) -> Callable:
    return lambda x, y: fn(_f(x), _f(y))


#: MIL op type -> numpy implementation taking the op's inputs as keyword arguments.
OPS: dict[str, Callable[..., Any]] = {
    "identity": lambda x: np.asarray(x),
    "linear": lambda x, weight, bias=None: (_f(x) @ _f(weight).T + (0 if bias is None else _f(bias))),
    "matmul": lambda x, y, transpose_x=False, transpose_y=False: np.matmul(
        np.swapaxes(_f(x), -1, -2) if transpose_x else _f(x),
        np.swapaxes(_f(y), -1, -2) if transpose_y else _f(y)),
    "add": _binary(np.add), "sub": _binary(np.subtract), "mul": _binary(np.multiply),
    "real_div": _binary(np.divide), "maximum": _binary(np.maximum), "minimum": _binary(np.minimum),
    "pow": _binary(np.power), "floor_div": _binary(np.floor_divide),
    "greater": _binary(np.greater), "greater_equal": _binary(np.greater_equal),
    "less": _binary(np.less), "less_equal": _binary(np.less_equal),
    "equal": _binary(np.equal), "not_equal": _binary(np.not_equal),
    "select": lambda cond, a, b: np.where(np.asarray(cond, bool), _f(a), _f(b)),
    "relu": _unary(lambda x: np.maximum(x, 0)),
    "relu6": _unary(lambda x: np.clip(x, 0, 6)),
    "leaky_relu": lambda x, alpha=0.01: np.where(_f(x) >= 0, _f(x), np.float32(alpha) * _f(x)),
    "elu": lambda x, alpha=1.0: np.where(_f(x) > 0, _f(x), np.float32(alpha) * np.expm1(_f(x))),
    "sigmoid": _unary(lambda x: 1 / (1 + np.exp(-x))),
    "sigmoid_hard": lambda x, alpha=0.2, beta=0.5: np.clip(np.float32(alpha) * _f(x) + np.float32(beta),
                                                           0, 1),
    "tanh": _unary(np.tanh), "exp": _unary(np.exp), "log": _unary(np.log), "abs": _unary(np.abs),
    "sqrt": _unary(np.sqrt), "square": _unary(np.square), "floor": _unary(np.floor), "ceil": _unary(np.ceil),
    "rsqrt": lambda x, epsilon=1e-12: 1 / np.sqrt(_f(x) + np.float32(epsilon)),
    "inverse": lambda x, epsilon=1e-4: 1 / (_f(x) + np.float32(epsilon)),
    "softplus": _unary(lambda x: np.logaddexp(np.float32(0), x)),
    "silu": _unary(lambda x: x / (1 + np.exp(-x))),
    "erf": _unary(_erf), "gelu": _gelu,
    "clip": lambda x, alpha, beta: np.clip(_f(x), alpha, beta),
    "softmax": _softmax,
    "reshape": _reshape,
    "transpose": lambda x, perm: np.transpose(x, [int(p) for p in perm]),
    "squeeze": lambda x, axes=None: np.squeeze(x, axis=None if axes is None else _axes(axes, np.ndim(x))),
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in np.atleast_1d(axes))),
    "concat": _concat,
    "slice_by_index": _slice_by_index,
    "reduce_mean": _reduce(np.mean), "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max), "reduce_min": _reduce(np.min),
    "batch_norm": _batch_norm,
    "conv": _conv, "max_pool": _pool("max"), "avg_pool": _pool("avg"), "pad": _pad,
    **LAYER_OPS,  # conv_transpose, resizing, topk, cumsum, argmax, norms, gathers, ... (coreml_layers)
}


def _out_dtype(var) -> np.dtype:
    from coremltools.converters.mil.mil import types

    return np.dtype(types.nptype_from_builtin(var.dtype))


class MilEvaluator:
    """Executes the ``main`` function of a MIL program in numpy.

    Args:
        program: a ``coremltools.converters.mil.Program`` loaded from an ML Program.
        function: the function to run (default ``"main"``).

    Raises:
        RuntimeFailure: the program uses an op outside :data:`OPS` (named in the message),
            nested blocks, or has no such function.
    """

    def __init__(self, program, function: str = "main"):
        if function not in program.functions:
            raise RuntimeFailure("ML Program has no such function", got=function,
                                 expected=sorted(program.functions))
        self.function = fn = program.functions[function]
        unsupported = sorted({op.op_type for op in fn.operations
                              if op.op_type != "const" and op.op_type != "cast" and op.op_type not in OPS})
        if unsupported:
            raise Unverifiable(
                f"Core ML reference evaluator does not implement the operation(s) {', '.join(unsupported)}",
                got=f"ops {unsupported} in {function}",
                expected=f"only the {len(OPS) + 2} ops of edgekit.runtime.coreml_ops.OPS (+ const, cast)")
        if any(op.blocks for op in fn.operations):
            raise RuntimeFailure("Core ML reference evaluator does not run control flow (nested blocks)",
                                 got=[op.op_type for op in fn.operations if op.blocks])
        self.consts: dict[str, Any] = {}
        for op in fn.operations:
            if op.op_type == "const":
                var = op.outputs[0]
                self.consts[var.name] = self._const(var)
        self.ops = [op for op in fn.operations if op.op_type != "const"]
        self.dtypes = {v.name: _out_dtype(v) for op in self.ops for v in op.outputs}
        self.computes_fp16 = any(d == np.float16 for d in self.dtypes.values()) or any(
            isinstance(v, np.ndarray) and v.dtype == np.float16 for v in self.consts.values())
        self.input_names = list(fn.inputs)
        self.output_names = [v.name for v in fn.outputs]

    @staticmethod
    def _const(var):
        val = var.val
        if isinstance(val, np.ndarray):
            return val.astype(_out_dtype(var), copy=False)
        if isinstance(val, (np.generic, int, float, bool)) and var.dtype is not None:
            try:
                return np.asarray(val, dtype=_out_dtype(var))[()]
            except TypeError:
                return val
        return val  # strings (cast dtypes, pad types, modes)

    def __call__(self, feeds: dict[str, np.ndarray], keep_all: bool = False) -> dict[str, np.ndarray]:
        """Run the function; returns its outputs, or with ``keep_all`` (default False) every op output
        in op order (``edgekit explain``)."""
        env: dict[str, Any] = dict(self.consts)
        for name, var in self.function.inputs.items():
            env[name] = np.asarray(feeds[name], dtype=_out_dtype(var))
        for op in self.ops:
            args = {}
            for key, value in op.inputs.items():
                args[key] = (tuple(env[v.name] for v in value) if isinstance(value, (tuple, list))
                             else env[value.name])
            if op.op_type == "cast":
                result = (np.asarray(args["x"]).astype(MIL_DTYPES[str(args["dtype"])]),)
            else:
                with np.errstate(all="ignore"):  # NaN/Inf propagate as in the runtime, silently
                    result = OPS[op.op_type](**args)
                result = result if isinstance(result, tuple) else (result,)
            if len(result) != len(op.outputs):
                raise RuntimeFailure(f"Core ML reference evaluator: {op.op_type} gave {len(result)} outputs",
                                     expected=len(op.outputs))
            for var, val in zip(op.outputs, result, strict=True):
                env[var.name] = np.asarray(val).astype(self.dtypes[var.name], copy=False)
        if keep_all:
            return {v.name: env[v.name] for op in self.ops for v in op.outputs}
        return {name: env[name] for name in self.output_names}

    def producers(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """``(output var, op type, op name, input vars that are not consts)`` per op output, in op order."""
        out = []
        for op in self.ops:
            ins = tuple(v.name for value in op.inputs.values()
                        for v in (value if isinstance(value, (tuple, list)) else (value,))
                        if v.name not in self.consts)
            out.extend((var.name, op.op_type, op.name, ins) for var in op.outputs)
        return out

"""A numpy reference evaluator for Core ML ML Programs (where Core ML itself cannot run).

The ``.mlpackage``'s program is loaded back as a MIL program by coremltools
(``converters.mil.frontend.milproto``); :class:`MilEvaluator` then walks its operations
in order, in numpy, keeping the program's own dtypes: every op's result is stored in the
dtype the program declares for it (fp16 where the program computes in fp16, after the
``cast`` ops and fp16 ``const`` weights a ``compute_precision=FLOAT16`` conversion inserts).
Arithmetic inside one op runs in float32 and is rounded to the declared dtype on output,
the way Core ML's fp16 CPU/GPU kernels store fp16 while accumulating in wider precision.

Only the operations in :data:`OPS` are implemented (what dense Keras models and the usual
elementwise/shape ops produce); any other op is refused at load time with an error that
names it. Each entry follows the MIL op's definition in
``coremltools/converters/mil/mil/ops/defs`` (argument names and defaults).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from edgekit.errors import RuntimeFailure

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
    return np.concatenate([np.asarray(v) for v in values], axis=int(axis))


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
            raise RuntimeFailure(
                f"Core ML reference evaluator does not implement the operation(s) {', '.join(unsupported)}",
                got=f"ops {unsupported} in {function}",
                expected=f"only the {len(OPS) + 2} ops of runtime.coreml_ops.OPS (+ const, cast)")
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

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
        return {name: env[name] for name in self.output_names}

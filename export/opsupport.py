"""What each converter and runtime supports, per TensorFlow op: the tables ``edgekit check`` reads.

Read from the installed packages wherever they carry the list:

- TF.js: ``tensorflowjs/op_list/*.json`` (the ops tensorflowjs 4.22 converts and TF.js runs);
- Core ML: coremltools' TF op registry (``_TF_OPS_REGISTRY``, the ops its TF frontend converts),
  and for the runtime the MIL ops each registered handler can emit (read from the handler's
  source) against the reference evaluator's :data:`edgekit.runtime.coreml_ops.OPS`;
- ONNX: tf2onnx's handler registry at the chosen opset (``tf_op.create_mapping``);
- TFLite: no package lists which TF ops legalise to builtins, so :data:`TFLITE_BUILTIN` is a
  table kept here (TF op -> the builtin(s) it becomes, measured with tensorflow 2.19); an op not
  in it needs Flex (``SELECT_TF_OPS``), which ai-edge-litert cannot load.

Every function is cached: the first call imports the converter's registry (seconds), later ones
are free.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from pathlib import Path

#: ops every graph has and every converter handles (not listed in reports).
TRIVIAL = frozenset({"Const", "Identity", "IdentityN", "Placeholder", "NoOp", "StopGradient", "Snapshot"})

#: TF op -> TFLite builtin it legalises to ("decomposed" = lowered to several builtins).
TFLITE_BUILTIN = {
    "Abs": "ABS", "Add": "ADD", "AddV2": "ADD", "AddN": "ADD_N", "All": "REDUCE_ALL", "Any": "REDUCE_ANY",
    "ArgMax": "ARG_MAX", "ArgMin": "ARG_MIN", "Atan2": "ATAN2", "AvgPool": "AVERAGE_POOL_2D",
    "BatchMatMul": "BATCH_MATMUL", "BatchMatMulV2": "BATCH_MATMUL", "BatchMatMulV3": "BATCH_MATMUL",
    "BatchToSpaceND": "BATCH_TO_SPACE_ND", "BiasAdd": "ADD", "Bitcast": "BITCAST",
    "BroadcastArgs": "BROADCAST_ARGS", "BroadcastTo": "BROADCAST_TO", "Cast": "CAST", "Ceil": "CEIL",
    "ClipByValue": "decomposed", "ConcatV2": "CONCATENATION", "Conv2D": "CONV_2D", "Conv3D": "CONV_3D",
    "Conv2DBackpropInput": "TRANSPOSE_CONV", "Cos": "COS", "Cumsum": "CUMSUM", "DepthToSpace": "DEPTH_TO_SPACE",
    "DepthwiseConv2dNative": "DEPTHWISE_CONV_2D", "Einsum": "BATCH_MATMUL (decomposed)", "Elu": "ELU",
    "EnsureShape": "decomposed", "Equal": "EQUAL", "Exp": "EXP", "ExpandDims": "EXPAND_DIMS",
    "Expm1": "decomposed", "Fill": "FILL", "Floor": "FLOOR", "FloorDiv": "FLOOR_DIV", "FloorMod": "FLOOR_MOD",
    "FusedBatchNorm": "decomposed", "FusedBatchNormV3": "decomposed", "GatherNd": "GATHER_ND",
    "GatherV2": "GATHER", "Greater": "GREATER", "GreaterEqual": "GREATER_EQUAL", "LeakyRelu": "LEAKY_RELU",
    "Less": "LESS", "LessEqual": "LESS_EQUAL", "Log": "LOG", "LogSoftmax": "LOG_SOFTMAX",
    "LogicalAnd": "LOGICAL_AND", "LogicalNot": "LOGICAL_NOT", "LogicalOr": "LOGICAL_OR",
    "MatMul": "FULLY_CONNECTED", "MatrixBandPart": "decomposed", "MatrixDiag": "MATRIX_DIAG",
    "Max": "REDUCE_MAX", "MaxPool": "MAX_POOL_2D", "Maximum": "MAXIMUM", "Mean": "MEAN", "Min": "REDUCE_MIN",
    "Minimum": "MINIMUM", "MirrorPad": "MIRROR_PAD", "Mul": "MUL", "Neg": "NEG", "NotEqual": "NOT_EQUAL",
    "OneHot": "ONE_HOT", "OnesLike": "decomposed", "Pack": "PACK", "Pad": "PAD", "PadV2": "PADV2",
    "Pow": "POW", "Prelu": "PRELU", "Prod": "REDUCE_PROD", "Range": "RANGE", "Rank": "RANK",
    "RealDiv": "DIV", "Reciprocal": "decomposed", "Relu": "RELU", "Relu6": "RELU6", "Reshape": "RESHAPE",
    "ResizeBilinear": "RESIZE_BILINEAR", "ResizeNearestNeighbor": "RESIZE_NEAREST_NEIGHBOR",
    "ReverseV2": "REVERSE_V2", "Round": "ROUND", "Rsqrt": "RSQRT", "ScatterNd": "SCATTER_ND",
    "Select": "SELECT", "SelectV2": "SELECT_V2", "Selu": "decomposed", "Shape": "SHAPE", "Sigmoid": "LOGISTIC",
    "Sign": "SIGN", "Sin": "SIN", "Size": "decomposed", "Slice": "SLICE", "Softmax": "SOFTMAX",
    "Softplus": "decomposed", "SpaceToBatchND": "SPACE_TO_BATCH_ND", "SpaceToDepth": "SPACE_TO_DEPTH",
    "Split": "SPLIT", "SplitV": "SPLIT_V", "Sqrt": "SQRT", "Square": "SQUARE",
    "SquaredDifference": "SQUARED_DIFFERENCE", "Squeeze": "SQUEEZE", "StridedSlice": "STRIDED_SLICE",
    "Sub": "SUB", "Sum": "SUM", "Tanh": "TANH", "Tile": "TILE", "TopKV2": "TOPK_V2", "Transpose": "TRANSPOSE",
    "Unique": "UNIQUE", "Unpack": "UNPACK", "Where": "WHERE", "While": "WHILE", "StatelessWhile": "WHILE",
    "ZerosLike": "ZEROS_LIKE", "UnsortedSegmentSum": "UNSORTED_SEGMENT_SUM", "Bucketize": "BUCKETIZE",
    "LRN": "LOCAL_RESPONSE_NORMALIZATION", "Relu1": "RELU_N1_TO_1", "HardSwish": "HARD_SWISH",
}
#: TF ops TFLite converts only inside a pattern it recognises (else Flex).
TFLITE_PATTERN = {"Erfc": "only as Keras' exact GELU, 0.5*x*erfc(-x/sqrt 2) -> GELU",
                  "Erf": "only inside a GELU pattern"}
#: Keras 3 recurrent loops: TensorList ops TFLite cannot lower ("requires element_shape to be static").
TFLITE_TENSORLIST = ("TensorListReserve", "TensorListFromTensor", "TensorListStack", "TensorListGetItem",
                     "TensorListSetItem")

#: runtime gaps measured here that no op list records: (format, backend) -> {op: why}.
RUNTIME_GAPS = {
    ("tfjs", "wasm"): {"Einsum": "no Einsum kernel in tfjs-backend-wasm 4.22"},
    ("tfjs", "*"): {"While": "may not run: TF.js ran a single Keras 3 LSTM loop here but not LSTM->GRU "
                             "(\"Cannot read properties of undefined\")",
                    "StatelessWhile": "may not run: TF.js runs some Keras 3 while loops and not others"},
}
#: converter gaps measured here that the registries do not show: format -> {op: why}.
CONVERTER_GAPS = {
    "coreml": {"While": "coremltools' TF frontend crashes on Keras 3 while loops (IndexError)",
               "StatelessWhile": "coremltools' TF frontend crashes on Keras 3 while loops (IndexError)"},
}


@functools.lru_cache(maxsize=1)
def tfjs_ops() -> frozenset[str]:
    """TF ops in tensorflowjs' op list (``op_list/*.json``)."""
    import importlib.util

    spec = importlib.util.find_spec("tensorflowjs")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    d = Path(next(iter(spec.submodule_search_locations))) / "op_list"
    ops = set()
    for f in sorted(d.glob("*.json")):
        ops |= {o["tfOpName"] for o in json.loads(f.read_text())}
    return frozenset(ops)


@functools.lru_cache(maxsize=1)
def _coreml_registry() -> dict:
    import logging

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    from coremltools.converters.mil.frontend.tensorflow import ops as _ops  # noqa: F401  (registers)
    from coremltools.converters.mil.frontend.tensorflow.tf_op_registry import _TF_OPS_REGISTRY

    return dict(_TF_OPS_REGISTRY)


def coreml_ops() -> frozenset[str]:
    """TF ops coremltools' TF frontend has a handler for."""
    return frozenset(_coreml_registry())


_MB = re.compile(r"\bmb\.([a-z_0-9]+)\(")
_HELPER = re.compile(r"\b(_[A-Za-z_0-9]+)\(")


#: MIL ops a float Keras graph never gets from the TF frontend (quantized-weight and complex-number paths).
MIL_NOT_FROM_FLOAT_GRAPHS = frozenset({"conv_quantized", "quantize", "dequantize"})


@functools.lru_cache(maxsize=1)
def _mil_core_ops() -> frozenset[str]:
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    return frozenset(SSAOpRegistry.core_ops) - MIL_NOT_FROM_FLOAT_GRAPHS


@functools.lru_cache(maxsize=None)
def coreml_mil_ops(tf_op: str) -> frozenset[str]:
    """Core MIL ops the coremltools handler of ``tf_op`` can emit (its source and the module helpers
    it calls, one level deep): an over-approximation, each branch counted; dialect ops (complex
    numbers) and quantized-weight ops are left out."""
    fn = _coreml_registry().get(tf_op)
    if fn is None:
        return frozenset()
    module = inspect.getmodule(fn)
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):
        return frozenset()
    names = set(_MB.findall(text))
    for helper in set(_HELPER.findall(text)):
        h = getattr(module, helper, None)
        if callable(h):
            try:
                names |= set(_MB.findall(inspect.getsource(h)))
            except (OSError, TypeError):
                pass
    return frozenset(names) & _mil_core_ops()


@functools.lru_cache(maxsize=4)
def onnx_ops(opset: int = 17) -> frozenset[str]:
    """TF ops tf2onnx 1.17 has a handler for at ``opset``."""
    import logging

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    import tf2onnx.onnx_opset  # noqa: F401  (registers the handlers)
    from tf2onnx.handler import tf_op

    return frozenset(tf_op.create_mapping(opset, []))


def tflite_support(op: str) -> tuple[str, str]:
    """``(status, note)``: ``builtin``, ``pattern`` (only in a recognised pattern), ``tensorlist``
    (a Keras 3 loop TFLite cannot lower) or ``flex`` (needs SELECT_TF_OPS)."""
    if op in TFLITE_BUILTIN:
        return "builtin", TFLITE_BUILTIN[op]
    if op in TFLITE_PATTERN:
        return "pattern", TFLITE_PATTERN[op]
    if op in TFLITE_TENSORLIST:
        return "tensorlist", "TensorList with a dynamic element shape: no builtin"
    return "flex", "no TFLite builtin: needs SELECT_TF_OPS (Flex)"


#: runtime gaps that fail only sometimes: a warning, not a predicted failure.
UNCERTAIN = ("may not run",)


def runtime_gap(fmt: str, op: str) -> dict[str, str]:
    """``{backend or "*": why}`` for a runtime gap of ``fmt`` on ``op`` (empty if none is known)."""
    return {backend: ops[op] for (f, backend), ops in RUNTIME_GAPS.items() if f == fmt and op in ops}

"""FLOPs of one inference (batch 1), counted from the exported graph itself: ``2 x MACs``.

Counted ops (everything else, elementwise and data movement, is left out, as the usual
"FLOPs of a network" figure does):

- TFLite (the interpreter's own op list and tensor shapes at batch 1): ``CONV_2D``
  (``2 * out * kh * kw * cin/groups``), ``DEPTHWISE_CONV_2D`` (``2 * out * kh * kw``),
  ``FULLY_CONNECTED`` (``2 * out * K``), ``BATCH_MATMUL`` (``2 * out * K``), ``TRANSPOSE_CONV``
  (``2 * in * kh * kw * cout``), ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (``2 * B * T * (4u(I + u))``);
- ONNX (``onnx`` shape inference with the batch set to 1): ``Conv``/``ConvInteger``/``QLinearConv``,
  ``ConvTranspose``, ``MatMul``/``MatMulInteger``/``QLinearMatMul``, ``Gemm``, ``LSTM``/``GRU``/``RNN``.

:func:`count` returns ``{"flops", "by_op": {op: flops}, "source"}``; ``flops`` is None when a
counted op has a shape the graph does not fix (an unknown non-batch dimension). For the bench,
:func:`add_flops` gives every case its count (rows without a graph of their own, the Keras,
SavedModel, TF.js and Core ML rows, take their example's fp32 count) and :func:`add_rates` turns
a row's p50 into GFLOP/s and a share of the measured GEMM peak (:mod:`edgekit.bench.peak`: fp32
for float rows, int8 for TFLite/ONNX int8 and int8_dynamic rows).
"""

from __future__ import annotations

import contextlib
import os
import sys
from math import prod
from pathlib import Path

import numpy as np


class _Unknown(Exception):
    pass


def _p(shape) -> int:
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise _Unknown(shape)
    return prod(dims)


# ---------------------------------------------------------------- TFLite
@contextlib.contextmanager
def _quiet_fd2():
    """File descriptor 2 on /dev/null for the duration (native libraries write there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tflite_op(name: str, ins: list, outs: list) -> int:
    out = outs[0]
    if name == "CONV_2D":  # filter [cout, kh, kw, cin/groups]
        return 2 * _p(out) * _p(ins[1][1:])
    if name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, cout]
        return 2 * _p(out) * _p(ins[1][1:3])
    if name == "FULLY_CONNECTED":  # weights [units, K]
        return 2 * _p(out) * int(ins[1][-1])
    if name == "BATCH_MATMUL":
        a = ins[0]
        k = int(a[-1]) if len(a) < 2 or int(a[-2]) == int(out[-2]) else int(a[-2])
        return 2 * _p(out) * k
    if name == "TRANSPOSE_CONV":  # (output_shape, weights [cout, kh, kw, cin], input)
        return 2 * _p(ins[2]) * _p(ins[1][:3])
    if name == "UNIDIRECTIONAL_SEQUENCE_LSTM":  # input [B, T, I] (or [T, B, I]); 4 input + 4 recurrent weights
        weights = sum(_p(w) for w in ins[1:9] if w is not None)
        return 2 * _p(ins[0][:2]) * weights
    return 0


def count_tflite(path: str | Path) -> dict:
    """FLOPs of a ``.tflite`` file at batch 1 (the LiteRT interpreter's op list and shapes)."""
    from edgekit.runtime.tflite import interpreter_class

    cls, desc = interpreter_class()
    with _quiet_fd2():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line stays off the terminal
        it = cls(model_path=str(path), num_threads=1)
    for d in it.get_input_details():  # batch 1, whatever the file's default input shape
        shape = list(d["shape"])
        if shape and shape[0] != 1:
            it.resize_tensor_input(d["index"], [1] + shape[1:], strict=False)
    with _quiet_fd2():
        it.allocate_tensors()
    shapes = {t["index"]: list(t["shape"]) for t in it.get_tensor_details()}
    by_op: dict[str, int] = {}
    unknown = []
    for op in it._get_ops_details():  # noqa: SLF001 - the only public-ish view of the op list
        ins = [shapes.get(int(i)) if int(i) >= 0 else None for i in op["inputs"]]
        outs = [shapes.get(int(i)) for i in op["outputs"]]
        try:
            f = _tflite_op(op["op_name"], ins, outs)
        except (_Unknown, IndexError, TypeError):
            unknown.append(op["op_name"])
            continue
        if f:
            by_op[op["op_name"]] = by_op.get(op["op_name"], 0) + f
    from edgekit.bench.partitions import partition_count

    partitions = partition_count(it)
    return {"flops": None if unknown else sum(by_op.values()), "by_op": by_op, "unknown": unknown,
            "source": f"tflite graph ({desc} op list, batch 1)", "delegate_partitions": partitions}


# ---------------------------------------------------------------- ONNX
def _onnx_shapes(model) -> dict[str, list[int]]:
    import onnx

    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1  # batch 1
    inferred = onnx.shape_inference.infer_shapes(model)
    out: dict[str, list[int]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    for init in inferred.graph.initializer:
        out[init.name] = list(init.dims)
    return out


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            import onnx

            return onnx.helper.get_attribute_value(a)
    return default


def _onnx_op(node, shape) -> int:
    op = node.op_type
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = shape(node.input[3] if op == "QLinearConv" else node.input[1])  # [M, C/g, kh, kw]
        return 2 * _p(shape(node.output[0])) * _p(w[1:])
    if op == "ConvTranspose":  # W [C, M/g, kh, kw]
        return 2 * _p(shape(node.input[0])) * _p(shape(node.input[1])[1:])
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        return 2 * _p(shape(node.output[0])) * int(shape(node.input[0])[-1])
    if op == "Gemm":
        a = shape(node.input[0])
        return 2 * _p(shape(node.output[0])) * int(a[0] if _attr(node, "transA", 0) else a[1])
    if op in ("LSTM", "GRU", "RNN"):  # X [T, B, I]; W [dirs, g*H, I]; R [dirs, g*H, H]
        x = shape(node.input[0])
        return 2 * _p(x[:2]) * (_p(shape(node.input[1])) + _p(shape(node.input[2])))
    return 0


def count_onnx(path: str | Path) -> dict:
    """FLOPs of a ``.onnx`` file at batch 1 (``onnx`` shape inference)."""
    import onnx

    model = onnx.load(str(path))
    shapes = _onnx_shapes(model)

    def shape(name: str) -> list[int]:
        if name not in shapes:
            raise _Unknown(name)
        return shapes[name]

    by_op: dict[str, int] = {}
    unknown = []
    for node in model.graph.node:
        try:
            f = _onnx_op(node, shape)
        except (_Unknown, IndexError):
            unknown.append(node.op_type)
            continue
        if f:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + f
    return {"flops": None if unknown else sum(by_op.values()), "by_op": by_op, "unknown": unknown,
            "source": f"onnx graph (onnx {onnx.__version__} shape inference, batch 1)"}


def count(path: str | Path, fmt: str) -> dict:
    """FLOPs of one exported file; ``{"flops": None, "error"}`` when it cannot be counted."""
    try:
        if fmt == "tflite":
            return count_tflite(path)
        if fmt == "onnx":
            return count_onnx(path)
    except Exception as exc:  # noqa: BLE001 - a file the counter cannot read gets no FLOPs, not a failed run
        return {"flops": None, "by_op": {}, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"flops": None, "by_op": {}, "error": f"no FLOP counter for {fmt}"}


def gflops_per_s(flops: int | None, p50_ms: float | None) -> float | None:
    """Achieved GFLOP/s of one batch-1 inference at ``p50_ms``."""
    if not flops or not p50_ms:
        return None
    return float(np.float64(flops) / (p50_ms / 1e3) / 1e9)


# ---------------------------------------------------------------- bench rows
INT8_PRECISIONS = ("int8", "int8_dynamic")


def add_flops(cases: list[dict]) -> None:
    """Set each case's ``flops`` (batch 1, from its own TFLite/ONNX graph; other rows take their
    example's fp32 TFLite or ONNX count) and ``flops_source``; TFLite cases also get
    ``delegate_partitions`` (the file's XNNPACK DELEGATE nodes: 1 when XNNPACK takes every op)."""
    counted: dict[str, dict] = {}
    for c in cases:
        if c.get("path") and c["format"] in ("tflite", "onnx") and not c.get("error") and c["path"] not in counted:
            counted[c["path"]] = count(c["path"], c["format"])
    ref: dict[str, dict] = {}
    for fmt in ("onnx", "tflite"):  # the TFLite figure wins when both exist
        for c in cases:
            got = counted.get(c.get("path") or "")
            if c["format"] == fmt and c["precision"] == "fp32" and got and got.get("flops"):
                ref[c["example"]] = got
    for c in cases:
        own = counted.get(c.get("path") or "")
        if own and "delegate_partitions" in own:  # XNNPACK partitions of the file (see bench.partitions)
            c["delegate_partitions"] = own["delegate_partitions"]
        got = own if own and own.get("flops") else ref.get(c["example"])
        c["flops"] = got.get("flops") if got else None
        c["flops_source"] = (got.get("source") if own is got else f"the example's fp32 {got.get('source')}") \
            if got else None


def add_rates(row: dict, peaks: dict) -> None:
    """Achieved GFLOP/s at batch 1 and the share of this thread setting's fp32 or int8 GEMM peak."""
    row["gflops"] = gflops_per_s(row.get("flops"), (row.get("latency") or {}).get("p50_ms"))
    pk = peaks.get(row["threads"]) or {}
    which = "int8_gops" if row["precision"] in INT8_PRECISIONS and row["format"] in ("tflite", "onnx") \
        else "fp32_gflops"
    row["peak_gops"] = pk.get(which)
    row["pct_peak"] = row["gflops"] / row["peak_gops"] if row["gflops"] and row["peak_gops"] else None

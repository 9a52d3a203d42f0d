"""This machine's compute ceiling: fp32 and int8 GEMM peaks, measured with a calibrated GEMM.

- fp32: ``numpy.matmul`` of two float32 square matrices (the BLAS numpy links, pinned to the
  worker's thread count through ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``), and onnxruntime's
  own float ``MatMul`` on the same shapes with the same threads; the peak is the faster of the two;
- int8: onnxruntime ``MatMulInteger`` (uint8 x int8 -> int32, the kernel its int8 models use), an
  in-memory model built with the ``onnx`` helpers, and LiteRT's int8 ``FULLY_CONNECTED`` (XNNPACK),
  a one-op flatbuffer written with the TFLite schema's object API: the runtimes themselves, no
  converter. LiteRT's float32 ``FULLY_CONNECTED`` is a third fp32 source.

Calibration: the size grows until one call takes at least ``CALL_S`` seconds (short calls, so a busy
machine still gives some undisturbed ones, as the model calls get), then the best of
``REPEAT`` calls (after a warm-up) counts ``2 * n**3`` operations. Nothing is written to disk.
"""

from __future__ import annotations

import time

import numpy as np

CALL_S = 0.004
REPEAT = 40
SIZES = (128, 256, 384, 512, 768, 1024, 1536, 2048)


def _best(fn, repeat: int = REPEAT) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _calibrated(make, call_s: float = CALL_S) -> dict:
    """``make(n) -> fn``: grow ``n`` until a call takes ``call_s``; returns {"gops", "n", "call_ms"}."""
    n, t = SIZES[0], 0.0
    for n in SIZES:
        fn = make(n)
        t = _best(fn, 1)
        if t >= call_s:
            break
    t = _best(fn)
    return {"gops": 2.0 * n ** 3 / t / 1e9, "n": n, "call_ms": t * 1e3}


def numpy_fp32() -> dict:
    """fp32 GEMM through numpy's BLAS."""
    rng = np.random.default_rng(0)

    def make(n):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out = np.empty((n, n), np.float32)
        return lambda: np.matmul(a, b, out=out)

    return {**_calibrated(make), "how": f"numpy {np.__version__} matmul float32"}


def _ort_session(n: int, integer: bool, threads: int):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:
        w = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
        feed = rng.integers(0, 256, (n, n), dtype=np.uint8)
    else:
        w = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        feed = rng.standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", a_type, [n, n])],
                              [helper.make_tensor_value_info("Y", y_type, [n, n])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    sess = ort.InferenceSession(onnx._serialize(model) if hasattr(onnx, "_serialize")
                                else model.SerializeToString(), sess_options=so,
                                providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"A": feed}), ort.__version__


def ort_gemm(integer: bool, threads: int) -> dict:
    """GEMM through onnxruntime's CPU provider: ``MatMulInteger`` (int8) or ``MatMul`` (fp32)."""
    version = {}

    def make(n):
        fn, version["v"] = _ort_session(n, integer, threads)
        return fn

    res = _calibrated(make)
    return {**res, "how": f"onnxruntime {version['v']} " + ("MatMulInteger u8xs8->s32" if integer
                                                             else "MatMul float32")}


def _fc_model(m: int, k: int, n: int, integer: bool) -> bytes:
    """A one-op TFLite flatbuffer: FULLY_CONNECTED ``[m, k] x [n, k]^T`` (int8 with int32 bias, or
    float32), written with the schema's object API (no converter)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S  # noqa: N812

    from edgekit.runtime.tflite_quant import one_op_model

    rng = np.random.default_rng(0)
    TT = S.TensorType  # noqa: N806

    def q(scale):
        qp = S.QuantizationParametersT()
        qp.scale, qp.zeroPoint = [scale], [0]
        return qp

    def tensor(name, shape, ttype, buf, quant=None):
        t = S.TensorT()
        t.name, t.shape, t.type, t.buffer, t.quantization = name, list(shape), ttype, buf, quant
        return t

    bufs = [S.BufferT() for _ in range(5)]
    if integer:
        w, bias = rng.integers(-127, 128, (n, k), dtype=np.int8), np.zeros(n, np.int32)
        tensors = [tensor("x", (m, k), TT.INT8, 1, q(0.05)), tensor("w", (n, k), TT.INT8, 2, q(0.01)),
                   tensor("b", (n,), TT.INT32, 3, q(0.0005)), tensor("y", (m, n), TT.INT8, 4, q(0.5))]
    else:
        w, bias = rng.standard_normal((n, k), dtype=np.float32), np.zeros(n, np.float32)
        tensors = [tensor("x", (m, k), TT.FLOAT32, 1), tensor("w", (n, k), TT.FLOAT32, 2),
                   tensor("b", (n,), TT.FLOAT32, 3), tensor("y", (m, n), TT.FLOAT32, 4)]
    bufs[2].data = np.frombuffer(w.tobytes(), np.uint8)
    bufs[3].data = np.frombuffer(bias.tobytes(), np.uint8)
    return one_op_model(S, flatbuffers, tensors, bufs, [0, 1, 2], [3], S.BuiltinOperator.FULLY_CONNECTED,
                        S.BuiltinOptions.FullyConnectedOptions, S.FullyConnectedOptionsT(), version=4 if integer else 1)


def tflite_fc(integer: bool, threads: int) -> dict:
    """GEMM through LiteRT (XNNPACK): one FULLY_CONNECTED op, int8 or float32."""
    from edgekit.runtime.tflite import interpreter_class

    cls, desc = interpreter_class()

    def make(n):
        it = cls(model_content=_fc_model(n, n, n, integer), num_threads=threads)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], np.ones((n, n), np.int8 if integer else np.float32))
        return it.invoke

    return {**_calibrated(make), "how": f"{desc} FULLY_CONNECTED " + ("int8" if integer else "float32")}


def measure(threads: int) -> dict:
    """Both peaks with ``threads`` threads (the caller pins BLAS threads in the environment).

    Returns:
        ``{"threads", "fp32_gflops", "int8_gops", "fp32": [...], "int8": [...]}``; a source that
        cannot run (onnxruntime or onnx missing) is listed with its ``error``.
    """
    fp32, int8 = [numpy_fp32()], []
    for integer, sink in ((False, fp32), (True, int8)):
        for fn, what in ((ort_gemm, "onnxruntime"), (tflite_fc, "LiteRT")):
            try:
                sink.append(fn(integer, threads))
            except Exception as exc:  # noqa: BLE001 - a missing runtime leaves the other figures
                sink.append({"gops": None, "how": what, "error": f"{type(exc).__name__}: {exc}"[:300]})

    def best(xs):
        vals = [x["gops"] for x in xs if x.get("gops")]
        return max(vals) if vals else None

    return {"threads": threads, "fp32_gflops": best(fp32), "int8_gops": best(int8), "fp32": fp32, "int8": int8}

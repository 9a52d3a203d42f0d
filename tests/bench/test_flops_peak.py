"""FLOPs counted from real graphs equal the hand count; the GEMM peak measurement returns figures.

The graphs are built without a converter: a one-op TFLite FULLY_CONNECTED flatbuffer (the peak
module's own writer) run by the LiteRT interpreter, and an ONNX Conv -> Flatten -> Gemm -> MatMul
graph checked by onnx and loaded by onnxruntime. No timing is asserted.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.bench import flops, peak


def test_tflite_fully_connected_flops_equal_the_hand_count(tmp_path):
    f = tmp_path / "fc.tflite"
    f.write_bytes(peak._fc_model(8, 96, 40, integer=False))  # [8, 96] x [40, 96]^T; counted at batch 1
    got = flops.count(f, "tflite")
    assert got["flops"] == 2 * 1 * 96 * 40 and got["by_op"] == {"FULLY_CONNECTED": 2 * 96 * 40}, got
    assert got["delegate_partitions"] == 1  # XNNPACK takes the one op
    f8 = tmp_path / "fc8.tflite"
    f8.write_bytes(peak._fc_model(1, 64, 32, integer=True))
    assert flops.count(f8, "tflite")["flops"] == 2 * 64 * 32


def _onnx_model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "W")  # 6 filters 3x3x3
    g = numpy_helper.from_array(rng.standard_normal((6 * 8 * 8, 10)).astype(np.float32), "G")
    m = numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "M")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "G"], ["h"]),
             helper.make_node("MatMul", ["h", "M"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], initializer=[w, g, m])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_onnx_conv_gemm_matmul_flops_equal_the_hand_count(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    f = tmp_path / "tiny.onnx"
    _onnx_model(f)
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])  # a graph the runtime runs
    assert sess.run(None, {"x": np.zeros((2, 3, 8, 8), np.float32)})[0].shape == (2, 4)
    conv = 2 * (6 * 8 * 8) * (3 * 3 * 3)
    gemm = 2 * 10 * (6 * 8 * 8)
    mm = 2 * 4 * 10
    got = flops.count(f, "onnx")
    assert got["by_op"] == {"Conv": conv, "Gemm": gemm, "MatMul": mm}, got
    assert got["flops"] == conv + gemm + mm


def test_an_unreadable_file_gets_no_flops_and_an_error(tmp_path):
    f = tmp_path / "bad.onnx"
    f.write_bytes(b"not a model")
    got = flops.count(f, "onnx")
    assert got["flops"] is None and got["error"]
    assert flops.count(f, "coreml")["flops"] is None
    assert flops.gflops_per_s(2_000_000, 1.0) == pytest.approx(2.0)
    assert flops.gflops_per_s(None, 1.0) is None


def test_peak_measures_fp32_and_int8_through_numpy_and_the_runtimes():
    got = peak.measure(1)
    assert got["fp32_gflops"] > 0 and got["int8_gops"] > 0, got
    hows = " | ".join(x["how"] for x in got["fp32"] + got["int8"])
    assert "numpy" in hows and "MatMulInteger" in hows and "FULLY_CONNECTED int8" in hows, hows
    assert all(x.get("error") is None for x in got["fp32"] + got["int8"]), got

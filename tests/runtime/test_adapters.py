"""Registry, base-class and per-adapter behaviour of TFLite, ONNX and SavedModel (real files)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.core.errors import EdgekitError, InputError, RuntimeFailure, UsageError
from edgekit.runtime.base import Runner, TensorInfo
from edgekit.runtime.registry import RUNNERS, detect_format, open_model, register, runner_class
from edgekit.runtime.tflite import TFLiteRunner

pytestmark = pytest.mark.filterwarnings("ignore")


# ----------------------------------------------------------------------------- registry
@pytest.mark.parametrize("key,fmt", [("tflite_fp32", "tflite"), ("tflite_int8", "tflite"), ("onnx", "onnx"),
                                     ("tfjs", "tfjs"), ("coreml_fp32", "coreml"),
                                     ("savedmodel", "savedmodel")])
def test_detect_format(runtime_models, key, fmt):
    assert detect_format(runtime_models[key]) == fmt


def test_detect_format_model_json_and_open_it(runtime_models):
    assert detect_format(runtime_models["tfjs"] / "model.json") == "tfjs"


def test_detect_format_refuses_unknown_and_missing(tmp_path):
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(InputError, match=r"cannot tell the model format.*weights\.h5.*tflite"):
        detect_format(tmp_path / "weights.h5")
    with pytest.raises(InputError, match="does not exist"):
        detect_format(tmp_path / "nope.tflite")
    with pytest.raises(InputError, match="does not exist"):
        open_model(tmp_path / "nope.onnx")


def test_registry_refuses_duplicates_and_non_runners():
    class Another(TFLiteRunner):
        pass

    with pytest.raises(UsageError, match="'tflite' is already registered"):
        register(Another)
    with pytest.raises(UsageError, match="only Runner subclasses"):
        register(dict)

    class Nameless(Runner):
        def _load(self):
            pass

        def _predict_impl(self, feeds):
            return {}

    with pytest.raises(UsageError, match="no format name"):
        register(Nameless)
    assert register(TFLiteRunner) is TFLiteRunner  # re-registering the same class is harmless
    assert RUNNERS["tflite"] is TFLiteRunner
    with pytest.raises(UsageError, match="unknown model format.*got: pt"):
        runner_class("pt")


def test_wrong_format_for_file_is_one_line_runtime_failure(runtime_models):
    with pytest.raises(RuntimeFailure) as exc:
        open_model(runtime_models["onnx"], format="tflite")
    assert "tflite runtime could not load" in str(exc.value) and "\n" not in str(exc.value)


def test_tensorinfo_roundtrip_and_bad_dict():
    t = TensorInfo("features", (None, 4), "float32")
    assert t.to_dict() == {"name": "features", "shape": [None, 4], "dtype": "float32"}
    assert TensorInfo.from_dict(t.to_dict()) == t
    assert TensorInfo("x", [2], np.float32).dtype == "float32"
    with pytest.raises(InputError, match="malformed tensor description"):
        TensorInfo.from_dict({"name": "x"})


def test_chunk_rows_option(runtime_models, golden):
    with pytest.raises(UsageError, match="chunk_rows"):
        TFLiteRunner(runtime_models["tflite_fp32"], chunk_rows=0)
    x = golden(1000, seed=11)
    with open_model(runtime_models["tflite_fp32"], chunk_rows=64) as small, \
            open_model(runtime_models["tflite_fp32"]) as big:
        np.testing.assert_allclose(small.predict(x)["output_0"], big.predict(x)["output_0"],
                                   atol=1e-6, rtol=0)


def test_runtime_errors_are_wrapped_with_the_runtime_name():
    class Broken(Runner):
        format = "broken"

        def _load(self):
            self.inputs = [TensorInfo("x", (None, 2), "float32")]
            self.outputs = [TensorInfo("y", (None, 1), "float32")]
            self.runtime_name = "broken runtime 0.1"

        def _predict_impl(self, feeds):
            if feeds["x"].shape[0] == 3:
                raise ValueError("kernel exploded")
            return {"y": np.zeros((1, 1), np.float32)}

    with Broken(__file__) as r:
        with pytest.raises(RuntimeFailure, match="broken runtime 0.1 failed.*ValueError: kernel exploded"):
            r.predict(np.zeros((3, 2), np.float32))
        with pytest.raises(RuntimeFailure, match="wrong batch size"):
            r.predict(np.zeros((2, 2), np.float32))


# ----------------------------------------------------------------------------- TFLite
def test_tflite_int8_reports_float_interface_and_quantization(runtime_models):
    with open_model(runtime_models["tflite_int8"]) as r:
        assert r.inputs[0].dtype == r.outputs[0].dtype == "float32"
        q_in, q_out = r.quantization["features"], r.quantization["output_0"]
        assert q_in["dtype"] == q_out["dtype"] == "int8" and q_in["scale"] > 0
        # softmax output: the converter fixes scale 1/256, zero point -128
        assert q_out == {"dtype": "int8", "scale": pytest.approx(1 / 256), "zero_point": -128}
        assert r.runtime_name.startswith("ai-edge-litert ")


def test_tflite_quantize_rounds_half_away_and_clips():
    q = {"dtype": "int8", "scale": 0.5, "zero_point": 3}
    x = np.array([[0.25, -0.25, 0.74, 1000.0, -np.inf, np.inf]], np.float32)
    got = TFLiteRunner._quantize("features", x, q)
    assert got.dtype == np.int8
    assert got.tolist() == [[4, 2, 4, 127, -128, 127]]
    with pytest.raises(InputError, match="NaN"):
        TFLiteRunner._quantize("features", np.array([[np.nan]], np.float32), q)
    u = TFLiteRunner._quantize("x", np.array([[-3.0, 300.0]], np.float32), {"dtype": "uint8", "scale": 1.0,
                                                                          "zero_point": 0})
    assert u.tolist() == [[0, 255]]


def test_tflite_resizes_only_when_the_batch_changes(runtime_models, golden):
    with open_model(runtime_models["tflite_fp32"], num_threads=1) as r:
        calls = []
        real = r._it.allocate_tensors
        r._it.allocate_tensors = lambda: (calls.append(1), real())[1]
        for n in (5, 5, 5, 7, 7, 5):
            r.predict(golden(n))
        assert len(calls) == 3  # 5 (from the load-time 1), 7, back to 5


# ----------------------------------------------------------------------------- ONNX
def test_onnx_corrupt_file_is_runtime_failure(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(RuntimeFailure, match="onnx runtime could not load"):
        open_model(bad)


def test_onnx_threads_option(runtime_models, golden):
    with open_model(runtime_models["onnx"], intra_op_num_threads=1, inter_op_num_threads=1) as r:
        assert r.runtime_name.startswith("onnxruntime ") and r.runtime_name.endswith(" CPU")
        assert r.predict(golden(3))["output_0"].shape == (3, 2)


# ----------------------------------------------------------------------------- SavedModel
def test_savedmodel_unknown_signature(runtime_models):
    with pytest.raises(InputError, match="signature not found.*serving_default"):
        open_model(runtime_models["savedmodel"], signature="nope")


def test_every_error_is_an_edgekit_error(runtime_models, golden):
    with open_model(runtime_models["onnx"]) as r:
        with pytest.raises(EdgekitError) as exc:
            r.predict(golden(2)[:, :, None])
        assert exc.value.exit_code == 2

"""Conformance suite every runtime adapter passes (scikit-learn's parametrize_with_checks idea).

Parametrized over ``RUNNER_CASES`` (every registered format, TF.js on both backends), on real
files produced by the real converters and executed by the real runtimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from edgekit.core.errors import InputError, UsageError
from edgekit.runtime.base import TensorInfo
from edgekit.runtime.registry import RUNNERS, runner_class

N_FEATURES = 4  # the conftest model: features (None, 4) -> output_0 (None, 2)


@dataclass(frozen=True)
class Case:
    """One conformance case: a file of ``runtime_models`` opened by one runner."""

    id: str
    format: str
    key: str  # key into runtime_models
    atol: float  # max |diff| allowed against TensorFlow's SavedModel output
    runtime: str  # substring runtime_name must contain
    options: dict = field(default_factory=dict, hash=False)
    quantized: bool = False


RUNNER_CASES = [
    Case("tflite-fp32", "tflite", "tflite_fp32", 1e-5, "ai-edge-litert", {"num_threads": 1}),
    # full-integer int8 of a tiny net: 1/256 output steps plus clipped inputs; measured ~0.02
    Case("tflite-int8", "tflite", "tflite_int8", 0.1, "ai-edge-litert", {"num_threads": 1}, quantized=True),
    Case("onnx-fp32", "onnx", "onnx", 1e-5, "onnxruntime", {"intra_op_num_threads": 1}),
    Case("tfjs-cpu", "tfjs", "tfjs", 1e-5, "tfjs 4.22.0 node cpu", {"backend": "cpu"}),
    Case("tfjs-wasm", "tfjs", "tfjs", 1e-5, "tfjs 4.22.0 node wasm", {"backend": "wasm"}),
    # The bounds for the Core ML reference evaluator: fp32 1e-5, fp16 ~1e-2.
    Case("coreml-fp32", "coreml", "coreml_fp32", 1e-5, "reference evaluator (fp32)"),
    Case("coreml-fp16", "coreml", "coreml_fp16", 1e-2, "reference evaluator (fp16)"),
    Case("savedmodel", "savedmodel", "savedmodel", 0.0, "SavedModel"),
    Case("keras", "keras", "keras", 1e-6, "keras"),
]

pytestmark = pytest.mark.filterwarnings("ignore")

CASES = [pytest.param(c, id=c.id, marks=[pytest.mark.node] if c.format == "tfjs" else [])
         for c in RUNNER_CASES]


def test_every_registered_runner_is_in_the_matrix():
    assert set(RUNNERS) == {c.format for c in RUNNER_CASES}
    assert set(RUNNERS) == {"tflite", "onnx", "tfjs", "coreml", "savedmodel", "keras"}


@pytest.mark.parametrize("case", CASES)
def test_metadata(case, open_case):
    r = open_case(case)
    assert r.is_loaded and type(r) is runner_class(case.format)
    assert r.inputs == [TensorInfo("features", (None, N_FEATURES), "float32")]
    assert r.outputs == [TensorInfo("output_0", (None, 2), "float32")]
    assert case.runtime in r.runtime_name
    assert TensorInfo.from_dict(r.inputs[0].to_dict()) == r.inputs[0]


@pytest.mark.parametrize("case", CASES)
def test_dict_by_output_name_matches_tensorflow(case, open_case, reference_outputs, golden):
    x = golden()
    out = open_case(case).predict(x)
    assert list(out) == ["output_0"]
    y = out["output_0"]
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (len(x), 2)
    err = float(np.abs(y - reference_outputs["output_0"]).max())
    assert err <= case.atol, f"{case.id}: max |diff| {err:.3g} vs TensorFlow > {case.atol}"
    # same result with the dict form of the input
    np.testing.assert_array_equal(open_case(case).predict({"features": x})["output_0"], y)


@pytest.mark.parametrize("case", CASES)
def test_batch_of_one_rows_equal_batch_rows(case, open_case, golden):
    r = open_case(case)
    x = golden(9, seed=3)
    whole = r.predict(x)["output_0"]
    rows = np.concatenate([r.predict(x[i:i + 1])["output_0"] for i in range(len(x))])
    # identical on every runtime here; 1e-6 leaves room for batch-size dependent kernels
    np.testing.assert_allclose(rows, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_repeated_calls_identical(case, open_case, golden):
    r = open_case(case)
    x = golden(33, seed=4)
    first = r.predict(x)["output_0"]
    r.predict(golden(5, seed=5))  # a different batch size in between
    np.testing.assert_array_equal(r.predict(x)["output_0"], first)


@pytest.mark.parametrize("case", CASES)
def test_large_batch_chunked_equals_unchunked(case, open_case, golden):
    r = open_case(case)
    x = golden(3000, seed=6)
    whole = r.predict(x)["output_0"]
    chunked = r.predict(x, batch_size=256)["output_0"]
    assert chunked.shape == whole.shape == (3000, 2)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


BAD_INPUTS = [
    ("dtype", lambda x: x.astype(np.float64), ["wrong dtype", "float64", "float32"]),
    ("int-dtype", lambda x: x.astype(np.int32), ["wrong dtype", "int32", "float32"]),
    ("shape", lambda x: x[:, :3], ["wrong shape", "(5, 3)", "[None, 4]"]),
    ("rank", lambda x: x[0], ["wrong rank", "(4,)", "rank 2"]),
    ("rank3", lambda x: x[None], ["wrong rank", "(1, 5, 4)"]),
    ("name", lambda x: {"feature": x}, ["input names", "'feature'", "features"]),
    ("extra-name", lambda x: {"features": x, "mask": x}, ["input names", "mask"]),
    ("empty", lambda x: x[:0], ["empty batch", "(0, 4)"]),
    ("list", lambda x: x.tolist(), ["not a numpy array", "list"]),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind,make,words", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_rejected_with_clear_message(case, open_case, kind, make, words, golden):
    with pytest.raises(InputError) as exc:
        open_case(case).predict(make(golden(5)))
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


@pytest.mark.parametrize("case", CASES)
def test_nan_and_inf_inputs_are_passed_through(case, open_case, golden):
    """NaN/Inf reach the runtime untouched; what relu makes of NaN is the runtime's business
    (TensorFlow and the wasm backend give max(NaN, 0) = 0, onnxruntime and TF.js cpu NaN)."""
    r = open_case(case)
    x = golden(4, seed=7)
    x[0, 0], x[1, 1] = np.nan, np.inf
    if case.quantized:
        with pytest.raises(InputError, match="NaN"):
            r.predict(x)
        x[0, 0] = -np.inf  # infinities clip to the int8 range
        assert np.isfinite(r.predict(x)["output_0"]).all()
        return
    y = r.predict(x)["output_0"]
    assert y.shape == (4, 2)
    np.testing.assert_array_equal(y[2:], r.predict(x[2:])["output_0"])
    np.testing.assert_array_equal(y, r.predict(x)["output_0"])  # NaN == NaN here


@pytest.mark.parametrize("case", CASES)
def test_lifecycle_and_options(case, runtime_models, golden):
    cls = runner_class(case.format)
    with pytest.raises(UsageError, match="unknown option"):
        cls(runtime_models[case.key], no_such_option=1)
    r = cls(runtime_models[case.key], **case.options)  # construction is cheap: nothing loaded
    assert not r.is_loaded and r.inputs == [] and r.runtime_name == "not loaded"
    with pytest.raises(UsageError, match="not loaded"):
        r.predict(golden(2))
    with r:
        assert r.predict(golden(2))["output_0"].shape == (2, 2)
        with pytest.raises(UsageError, match="batch_size"):
            r.predict(golden(2), batch_size=0)
    assert not r.is_loaded
    r.close()  # idempotent

"""Fixtures for the runtime adapter tests: one small Keras model converted by the real converters.

``runtime_models`` builds, once per test run (shared across xdist workers by a file lock), a
SavedModel of a 4 -> 8 (relu) -> 4 (sigmoid) -> 2 (softmax) MLP with non-zero biases and its
conversions: TFLite fp32 and full-integer int8, ONNX (tf2onnx, opset 17), a TF.js graph model
and Core ML ML Programs in fp32 and fp16 (output renamed to ``output_0`` like the others).
The converters are called directly (export/ is built in parallel); every file keeps the
signature names ``features`` -> ``output_0``.

Fixtures: ``runtime_models`` (paths), ``golden(n, seed)`` (float32 inputs),
``reference_outputs`` (TensorFlow's outputs on ``golden()``), ``open_case(case)`` (one loaded
runner per conformance case for the session; a case has ``id``, ``key``, ``format``, ``options``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tensorflowjs imports tensorflow_decision_forests, whose welcome banner imports IPython when
# stdout is not a terminal (pytest capture): ModuleNotFoundError without this.
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

import edgekit.parity.reference  # noqa: E402,F401  (registers the SavedModel reference runner)

N_FEATURES = 4


@contextlib.contextmanager
def _flock(path: Path):
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def golden_inputs(n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)


def _build(d: Path) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    init = keras.initializers.RandomNormal(stddev=0.5, seed=1)
    model = keras.Sequential([
        keras.Input((N_FEATURES,), name="features"),
        keras.layers.Dense(8, activation="relu", bias_initializer=init),
        keras.layers.Dense(4, activation="sigmoid", bias_initializer=init),
        keras.layers.Dense(2, activation="softmax", bias_initializer=init),
    ])
    sm = d / "savedmodel"
    model.export(str(sm), verbose=False)
    model.save(str(d / "model.keras"))  # the Keras reference runner's file

    calib = golden_inputs(200, seed=1)
    for name, int8 in (("model_fp32.tflite", False), ("model_int8.tflite", True)):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(sm))
        if int8:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([row[None]] for row in calib)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
        (d / name).write_bytes(conv.convert())

    import tf2onnx

    loaded = tf.saved_model.load(str(sm))  # kept alive for tf2onnx and coremltools
    fn = loaded.signatures["serving_default"]
    spec = [tf.TensorSpec((None, N_FEATURES), tf.float32, name="features")]
    tf2onnx.convert.from_function(tf.function(lambda features: fn(features=features)), input_signature=spec,
                                  opset=17, output_path=str(d / "model.onnx"))

    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_conv

    tfjs_conv.convert_tf_saved_model(str(sm), str(d / "tfjs"), signature_def="serving_default")

    import coremltools as ct

    for name, prec in (("model_fp32.mlpackage", ct.precision.FLOAT32),
                       ("model_fp16.mlpackage", ct.precision.FLOAT16)):
        ml = ct.convert([fn], source="tensorflow", convert_to="mlprogram", compute_precision=prec,
                        inputs=[ct.TensorType(name="features", shape=(ct.RangeDim(1, 65536), N_FEATURES))])
        s = ml.get_spec()
        ct.utils.rename_feature(s, s.description.output[0].name, "output_0")
        ct.models.MLModel(s, weights_dir=ml.weights_dir, skip_model_load=True).save(str(d / name))
    (d / "DONE").write_text("ok")


@pytest.fixture(scope="session")
def runtime_models(tmp_path_factory) -> dict[str, Path]:
    """Paths of the converted test model, keyed like ``Case.key``; built once per run."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    d = root / "edgekit-runtime-models-2"  # -2: the build now also writes model.keras
    d.mkdir(exist_ok=True)
    with _flock(root / "edgekit-runtime-models.lock"):
        if not (d / "DONE").exists():
            _build(d)
    return {"keras": d / "model.keras", "savedmodel": d / "savedmodel", "tflite_fp32": d / "model_fp32.tflite",
            "tflite_int8": d / "model_int8.tflite", "onnx": d / "model.onnx", "tfjs": d / "tfjs",
            "coreml_fp32": d / "model_fp32.mlpackage", "coreml_fp16": d / "model_fp16.mlpackage"}


@pytest.fixture(scope="session")
def golden():
    """``golden(n=64, seed=0)``: seeded standard-normal float32 inputs of shape (n, 4)."""
    return golden_inputs


@pytest.fixture(scope="session")
def reference_outputs(runtime_models) -> dict[str, np.ndarray]:
    """SavedModel outputs (TensorFlow) on ``golden_inputs()``, computed once."""
    from edgekit.runtime.registry import open_model

    with open_model(runtime_models["savedmodel"]) as r:
        return r.predict(golden_inputs())


@pytest.fixture(scope="session")
def open_case(runtime_models):
    """Factory ``open_case(case) -> loaded runner``, one runner per case for the session."""
    from edgekit.runtime.registry import open_model

    runners = {}

    def get(case):
        if case.id not in runners:
            runners[case.id] = open_model(runtime_models[case.key], format=case.format, **case.options)
        return runners[case.id]

    yield get
    for r in runners.values():
        r.close()

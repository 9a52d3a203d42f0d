"""What every example shares: the training context, the result, and writing the artifact.

An example function builds and trains a model and returns a :class:`TrainResult`
whose ``model`` is the *serving* model (raw features in, raw-scale outputs out);
:func:`write_artifact` turns it into the artifact layout::

    <example>/saved_model/1/   TensorFlow Serving layout, written by model.export
    <example>/model.keras
    <example>/reference.npz    golden inputs + Keras predictions (+ y_true), float32
    <example>/calibration.npz  training inputs (raw scale): the int8 representative set
    <example>/example.json     task, labels, signature, reference layout
    <example>/metrics.json     task metrics, hyperparameters, seed, versions, seconds
    <example>/*.png            the tutorial's plots
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.fsutil import write_json
from edgekit.core.version import __version__

INPUT_NAME = "features"
EXTRA_ROWS = 64          # seeded extra golden rows spanning the input range
EXTRA_SEED = 20241129    # fixed: the extra rows are the same whatever --seed is
# model.keras reloaded on TensorFlow vs the training backend's predictions, relative to the peak
# output: measured 1.2e-7 (JAX -> TF, STACK.md); 1e-5 is the fp32 parity tolerance verify applies.
RELOAD_ATOL = 1e-5


@dataclass
class TrainContext:
    """Where and how an example trains.

    Attributes:
        dir: the (temporary) example directory to write plots into.
        seed: the global seed (default 0).
        quick: a few epochs only, for tests (default False).
        progress: ``progress(epoch, epochs, loss)`` callback factory output (default none).
        log: where messages go (default print).
        exporter: a :class:`edgekit.train.tf_export.TFExporter` writing the SavedModel on the TensorFlow
            backend, or None to export in this process (default None).
        plan: backend/distribution facts recorded in metrics.json (default empty).
    """

    dir: Path
    seed: int = 0
    quick: bool = False
    progress: Any = None
    log: Any = print
    exporter: Any = None
    plan: dict = field(default_factory=dict)

    def epochs(self, full: int, quick: int = 5) -> int:
        return min(full, quick) if self.quick else full


@dataclass
class TrainResult:
    """What an example returns.

    Attributes:
        model: the serving Keras model (raw in, raw out), called once.
        task: ``binary``, ``multiclass`` or ``regression``.
        metrics: task metrics (accuracy, or mse/r2 on raw scale), flat name -> float.
        headline: (metric name, value) for the summary table.
        hyperparams: everything needed to reproduce the run.
        golden_x: labelled golden inputs (raw scale), float32 (n, F).
        y_true: their ground truth (n,) or (n, 1).
        calib_x: training inputs (raw scale) for int8 calibration.
        labels: class labels for classifiers (default none).
        extra: any further JSON-able facts for metrics.json (default empty).
    """

    model: Any
    task: str
    metrics: dict
    headline: tuple[str, float]
    hyperparams: dict
    golden_x: np.ndarray
    y_true: np.ndarray
    calib_x: np.ndarray
    labels: list | None = None
    extra: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and the Keras backend; on TensorFlow also turn on op determinism."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.experimental.enable_op_determinism()
        except RuntimeError:  # already set in this process
            pass


def predict(model, x) -> np.ndarray:
    """``model(x, training=False)`` as a numpy array, on any backend (torch tensors are detached)."""
    import keras

    if not isinstance(x, np.ndarray):
        x = keras.ops.convert_to_numpy(x)
    return np.asarray(keras.ops.convert_to_numpy(model(np.asarray(x, np.float32), training=False)))


def extra_rows(x: np.ndarray, n: int = EXTRA_ROWS, margin: float = 0.25) -> np.ndarray:
    """Fixed seeded rows spanning the input range (plus a margin) of ``x``."""
    rng = np.random.default_rng(EXTRA_SEED)
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return rng.uniform(lo - margin * span, hi + margin * span, size=(n, x.shape[1])).astype(np.float32)


def library_versions() -> dict:
    """Versions of what trained the model (read from the installed metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    import keras

    out = {"python": platform.python_version(), "numpy": np.__version__}
    names = ["tensorflow", "keras", "scikit-learn"] + {"jax": ["jax", "jaxlib"], "torch": ["torch"]}.get(
        keras.backend.backend(), [])
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["edgekit"] = __version__
    return out


def _signature_info(saved_model_dir: Path) -> tuple[list[dict], list[dict]]:
    """The serving signature's inputs and outputs (name, shape, dtype), read from ``saved_model.pb``.

    The protobuf is parsed, not loaded with ``tf.saved_model.load`` (which restores the functions
    and variables: 0.1-0.3 s per example for the same names, shapes and dtypes).
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    sig = sm.meta_graphs[0].signature_def["serving_default"]

    def info(tensors) -> list[dict]:
        return [{"name": k, "shape": [None if d.size == -1 else int(d.size) for d in v.tensor_shape.dim],
                 "dtype": tf.dtypes.as_dtype(v.dtype).name} for k, v in sorted(tensors.items())]

    return info(sig.inputs), info(sig.outputs)


def write_artifact(ctx: TrainContext, name: str, result: TrainResult, seconds: float) -> dict:
    """Write the artifact layout for ``result`` into ``ctx.dir``; return metrics.json's content.

    On the TensorFlow backend without a strategy the SavedModel is exported here; otherwise
    (JAX, torch, a distributed run) ``ctx.exporter`` writes it on the TensorFlow backend from
    ``model.keras`` and the reloaded model's predictions are checked against the trained ones.
    """
    d = ctx.dir
    model = result.model
    sm_dir = d / "saved_model" / "1"
    golden = np.concatenate([result.golden_x.astype(np.float32), extra_rows(result.calib_x)], axis=0)
    pred = predict(model, golden).astype(np.float32)
    model.save(d / "model.keras")
    reload_diff = None
    if ctx.exporter is None:
        sm_dir.parent.mkdir(parents=True, exist_ok=True)
        with _quiet():
            model.export(str(sm_dir), format="tf_saved_model", verbose=False)
        ins, outs = _signature_info(sm_dir)
    else:
        ins, outs, tf_pred = ctx.exporter.export(d, golden)
        reload_diff = float(np.max(np.abs(tf_pred - pred))) if pred.size else 0.0
        scale = max(1.0, float(np.max(np.abs(pred))))
        if not reload_diff <= RELOAD_ATOL * scale:
            raise RuntimeError(f"{name}: model.keras reloaded on TensorFlow predicts {reload_diff:.3g} away from "
                               f"the trained model (allowed {RELOAD_ATOL * scale:.3g})")
    if len(ins) != 1:
        raise RuntimeError(f"{name}: expected one signature input, got {[i['name'] for i in ins]}")
    ref = {ins[0]["name"]: golden, outs[0]["name"]: pred,
           "y_true": np.asarray(result.y_true, dtype=np.float32)}
    np.savez(d / "reference.npz", **ref)
    np.savez(d / "calibration.npz", **{ins[0]["name"]: result.calib_x.astype(np.float32)})
    write_json(d / "example.json", {
        "name": name, "task": result.task,
        "metric": "accuracy" if result.task != "regression" else "r2",
        "labels": result.labels, "inputs": ins, "outputs": outs,
        "reference": {"inputs": [ins[0]["name"]], "outputs": [outs[0]["name"]],
                      "n_labeled": int(len(result.golden_x)), "target_key": "y_true",
                      "n_extra": EXTRA_ROWS},
        "edgekit_version": __version__,
    })
    import keras

    training = {**ctx.plan, "keras_backend": keras.backend.backend(),
                "saved_model_written_by": "this process" if ctx.exporter is None else
                "model.keras reloaded on the tensorflow backend"}
    if reload_diff is not None:
        training["tensorflow_reload_max_abs_diff"] = reload_diff
    metrics = {"example": name, "task": result.task, "backend": keras.backend.backend(), "training": training,
               "metrics": result.metrics,
               "headline": {"name": result.headline[0], "value": float(result.headline[1])},
               "hyperparams": result.hyperparams, "seed": ctx.seed, "quick": ctx.quick,
               "train_seconds": round(seconds, 3), "versions": library_versions(), **result.extra}
    write_json(d / "metrics.json", metrics)
    return metrics


class _quiet:
    """Send TensorFlow's C++ and Python chatter (stderr, fd 2) to ``log`` (default: discard)."""

    def __init__(self, log: Path | None = None):
        self._log = log

    def __enter__(self):
        self._fd = os.dup(2)
        self._null = os.open(self._log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stderr.flush()
        os.dup2(self._null, 2)

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self._fd, 2)
        os.close(self._fd)
        os.close(self._null)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0

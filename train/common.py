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


@dataclass
class TrainContext:
    """Where and how an example trains.

    Attributes:
        dir: the (temporary) example directory to write plots into.
        seed: the global seed (default 0).
        quick: a few epochs only, for tests (default False).
        progress: ``progress(epoch, epochs, loss)`` callback factory output.
    """

    dir: Path
    seed: int = 0
    quick: bool = False
    progress: Any = None
    log: Any = print

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
    """Seed Python, numpy and TensorFlow, and turn on TF op determinism."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except RuntimeError:  # already set in this process
        pass


def extra_rows(x: np.ndarray, n: int = EXTRA_ROWS, margin: float = 0.25) -> np.ndarray:
    """Fixed seeded rows spanning the input range (plus a margin) of ``x``."""
    rng = np.random.default_rng(EXTRA_SEED)
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return rng.uniform(lo - margin * span, hi + margin * span, size=(n, x.shape[1])).astype(np.float32)


def library_versions() -> dict:
    import keras
    import sklearn
    import tensorflow as tf

    return {"python": platform.python_version(), "numpy": np.__version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "scikit-learn": sklearn.__version__, "edgekit": __version__}


def _signature_info(saved_model_dir: Path) -> tuple[list[dict], list[dict]]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    sig = loaded.signatures["serving_default"]
    ins = [{"name": k, "shape": list(v.shape.as_list()), "dtype": v.dtype.name}
           for k, v in sorted(sig.structured_input_signature[1].items())]
    outs = [{"name": k, "shape": list(v.shape.as_list()), "dtype": v.dtype.name}
            for k, v in sorted(sig.structured_outputs.items())]
    return ins, outs


def write_artifact(ctx: TrainContext, name: str, result: TrainResult, seconds: float) -> dict:
    """Write the artifact layout for ``result`` into ``ctx.dir``; return metrics.json's content."""
    d = ctx.dir
    model = result.model
    sm_dir = d / "saved_model" / "1"
    sm_dir.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        model.export(str(sm_dir), format="tf_saved_model", verbose=False)
    model.save(d / "model.keras")
    ins, outs = _signature_info(sm_dir)
    if len(ins) != 1:
        raise RuntimeError(f"{name}: expected one signature input, got {[i['name'] for i in ins]}")
    golden = np.concatenate([result.golden_x.astype(np.float32), extra_rows(result.calib_x)], axis=0)
    pred = np.asarray(model(golden, training=False), dtype=np.float32)
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
    metrics = {"example": name, "task": result.task, "metrics": result.metrics,
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

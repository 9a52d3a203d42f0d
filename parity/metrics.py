"""Task metrics computed from a model's outputs on the labelled golden rows.

The first ``n_labeled`` rows of ``reference.npz`` carry ground truth in ``y_true``
(see the artifact contract); the same metric is computed from the Keras outputs and
from each format's outputs so a drop can be judged.

- binary: accuracy, predicted class = ``p > 0.5`` on a one-unit sigmoid output
  (Keras' ``binary_accuracy`` rule).
- multiclass: accuracy of the argmax over the last axis (``y_true`` class ids, or
  one-hot rows).
- regression: R² (higher is better; ``1 - SS_res / SS_tot``, averaged over output
  columns as scikit-learn's ``uniform_average``) and MSE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.core.errors import InputError

TASK_METRIC = {"binary": "accuracy", "multiclass": "accuracy", "regression": "r2"}


@dataclass(frozen=True)
class TaskMetrics:
    """Metrics of one set of outputs.

    Attributes:
        name: the headline metric (``accuracy`` or ``r2``); higher is better.
        value: its value (``None`` when there are no labelled rows).
        mse: mean squared error for regressions (``None`` otherwise).
        n: number of labelled rows used.
    """

    name: str
    value: float | None
    mse: float | None
    n: int


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1) if a.ndim != 2 else a


def accuracy_binary(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of rows whose ``prob > threshold`` equals ``y_true`` (0/1)."""
    p = _as_2d(prob)
    if p.shape[1] != 1:
        raise InputError("binary accuracy needs a one-unit output", got=f"shape {p.shape}",
                         expected="(n, 1)")
    pred = (p[:, 0] > threshold).astype(np.int64)
    y = np.asarray(y_true).reshape(len(p), -1)[:, 0].astype(np.float64) > 0.5
    return float(np.mean(pred == y))


def accuracy_multiclass(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Fraction of rows whose argmax over classes equals the class id (or one-hot argmax)."""
    s = _as_2d(scores)
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == s.shape[1] and s.shape[1] > 1:
        y = y.argmax(axis=1)
    y = y.reshape(len(s)).astype(np.int64)
    return float(np.mean(s.argmax(axis=1) == y))


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination, averaged over output columns.

    A constant column scores 1.0 if predicted exactly and 0.0 otherwise (scikit-learn's rule).
    """
    p = _as_2d(y_pred)
    y = _as_2d(np.asarray(y_true)).reshape(p.shape)
    ss_res = ((y - p) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    scores = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                      np.where(ss_res == 0, 1.0, 0.0))
    return float(scores.mean())


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    p = _as_2d(y_pred)
    y = _as_2d(np.asarray(y_true)).reshape(p.shape)
    return float(((y - p) ** 2).mean())


def task_metrics(task: str, y_true: np.ndarray, outputs: np.ndarray, n_labeled: int) -> TaskMetrics:
    """Compute the task's metrics on the first ``n_labeled`` rows of ``outputs``.

    Args:
        task: ``binary``, ``multiclass`` or ``regression``.
        y_true: ground truth for the first ``n_labeled`` rows.
        outputs: the model's output (first output), one row per golden input row.
        n_labeled: number of labelled rows.

    Raises:
        InputError: unknown task, or fewer outputs/labels than ``n_labeled``.
    """
    if task not in TASK_METRIC:
        raise InputError("unknown task", got=task, expected=sorted(TASK_METRIC))
    name = TASK_METRIC[task]
    n = int(n_labeled)
    if n <= 0:
        return TaskMetrics(name, None, None, 0)
    out = np.asarray(outputs)
    y = np.asarray(y_true)
    if len(out) < n or len(y) < n:
        raise InputError("fewer rows than n_labeled", got=f"outputs {len(out)}, y_true {len(y)}",
                         expected=f">= {n}")
    out, y = out[:n], y[:n]
    if task == "regression":
        return TaskMetrics(name, r2_score(y, out), mse(y, out), n)
    if task == "binary":
        return TaskMetrics(name, accuracy_binary(y, out), None, n)
    return TaskMetrics(name, accuracy_multiclass(y, out), None, n)

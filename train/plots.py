"""The tutorial's plots, written as PNG (matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Fixed margins for the single-panel plots instead of fig.tight_layout(), which measured every
# text box at 0.1-0.15 s per figure (three figures per example): the labels fit these margins.
_MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.12, "top": 0.92}


def boundary_grid(x: np.ndarray, step: float = 0.02, pad: float = 0.5):
    """The tutorial's mesh: the data range plus ``pad``, every ``step``."""
    x_min, x_max = x[:, 0].min() - pad, x[:, 0].max() + pad
    y_min, y_max = x[:, 1].min() - pad, x[:, 1].max() + pad
    xx, yy = np.meshgrid(np.arange(x_min, x_max, step), np.arange(y_min, y_max, step))
    return xx, yy, np.c_[xx.ravel(), yy.ravel()].astype(np.float32)


def _probs(model, grid: np.ndarray) -> np.ndarray:
    """``model`` on ``grid``: a Keras model through Keras, a numpy one (``numpy_forward``) directly."""
    if getattr(model, "numpy_forward", False):
        return np.asarray(model(grid))
    from edgekit.train.common import predict

    return predict(model, grid)


def draw_boundary(ax, model, x: np.ndarray, y: np.ndarray, title: str, step: float = 0.02) -> None:
    xx, yy, grid = boundary_grid(x, step)
    probs = _probs(model, grid)
    z = probs.argmax(axis=1) if probs.shape[1] > 1 else (probs[:, 0] > 0.5).astype(int)
    plt = _plt()
    ax.contourf(xx, yy, z.reshape(xx.shape), cmap=plt.cm.coolwarm, alpha=0.8)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap=plt.cm.seismic, edgecolors="k", s=18)
    ax.set_title(title)


def decision_boundary(path: Path, model, x: np.ndarray, y: np.ndarray, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    draw_boundary(ax, model, x, y, title)
    fig.subplots_adjust(**_MARGINS)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def predicted_vs_actual(path: Path, y_true: np.ndarray, y_pred: np.ndarray, title: str) -> None:
    plt = _plt()
    y_true, y_pred = np.ravel(y_true), np.ravel(y_pred)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(y_true, y_pred, color="blue", s=12)
    lo, hi = float(y_true.min()), float(y_true.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=2)
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title(title)
    fig.subplots_adjust(**_MARGINS)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def training_loss(path: Path, history: dict, epochs_axis: list[int] | None, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, values in history.items():
        xs = epochs_axis if epochs_axis and len(epochs_axis) == len(values) else range(1, len(values) + 1)
        ax.plot(list(xs), values, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.subplots_adjust(**{**_MARGINS, "left": 0.17})  # room for log-scale tick labels
    fig.savefig(path, dpi=90)
    plt.close(fig)


def sweep_grid(path: Path, panels: list[tuple[str, object]], x: np.ndarray, y: np.ndarray) -> None:
    """The tutorial's figure of decision boundaries for every hidden size (2 columns)."""
    plt = _plt()
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(10, 4 * rows), squeeze=False)
    for ax, (title, model) in zip(axes.ravel(), panels):
        draw_boundary(ax, model, x, y, title, step=0.03)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    # fixed margins, not tight_layout (0.4 s for eight axes)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.03, top=0.97, wspace=0.15, hspace=0.25)
    fig.savefig(path, dpi=80)
    plt.close(fig)

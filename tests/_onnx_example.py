"""A tiny example dir per the artifact contract, built without TensorFlow.

The "Keras" reference is numpy (``sigmoid(x @ W + b)`` or ``x @ W + b``) and the export
is a hand-made ONNX graph of the same math, so verify can be exercised in a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekit.core.fsutil import sha256_tree, tree_size
from edgekit.runtime import manifest as mf

F = 3


def forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, task: str) -> np.ndarray:
    z = x.astype(np.float64) @ w + b
    return (1 / (1 + np.exp(-z)) if task == "binary" else z).astype(np.float32)


def write_onnx(path: Path, w: np.ndarray, b: np.ndarray, task: str) -> None:
    from onnx import TensorProto, helper, numpy_helper

    k = w.shape[1]
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, w.shape[0]])
    y = helper.make_tensor_value_info("output_0", TensorProto.FLOAT, [None, k])
    last = "z" if task == "binary" else "output_0"
    nodes = [helper.make_node("MatMul", ["features", "W"], ["mm"]),
             helper.make_node("Add", ["mm", "B"], [last])]
    if task == "binary":
        nodes.append(helper.make_node("Sigmoid", ["z"], ["output_0"]))
    inits = [numpy_helper.from_array(w.astype(np.float32), "W"),
             numpy_helper.from_array(b.astype(np.float32), "B")]
    graph = helper.make_graph(nodes, "toy", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def artifact_entry(root: Path, fmt: str, precision: str, rel: str, k: int) -> dict:
    full = root / rel
    return {"format": fmt, "precision": precision, "path": rel, "size_bytes": tree_size(full),
            "sha256": sha256_tree(full),
            "inputs": [{"name": "features", "shape": [None, F], "dtype": "float32"}],
            "outputs": [{"name": "output_0", "shape": [None, k], "dtype": "float32"}],
            "quantization": None, "converter": "test", "converter_version": "0", "seconds": 0.0}


def make_example(parent: Path, name: str = "toy", task: str = "binary", n: int = 40, n_labeled: int = 30,
                 variants: dict | None = None, failures: list | None = None, seed: int = 0) -> Path:
    """Write ``parent/name`` with reference.npz, example.json and exports/ (ONNX only).

    Args:
        variants: ``{precision: (w, b)}`` for ONNX files; default ``{"fp32": (w, b)}`` = the reference.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((F, 1))
    b = np.array([0.1])
    x = rng.standard_normal((n, F)).astype(np.float32)
    ref = forward(x, w, b, task)
    y = (ref[:n_labeled, 0] > 0.5).astype(np.float32) if task == "binary" else ref[:n_labeled] + 0.01
    ex = parent / name
    (ex / "exports").mkdir(parents=True)
    np.savez(ex / "reference.npz", features=x, output_0=ref, y_true=y)
    info = {"name": name, "task": task, "metric": "accuracy" if task == "binary" else "r2",
            "labels": [0, 1] if task == "binary" else None,
            "inputs": [{"name": "features", "shape": [None, F], "dtype": "float32"}],
            "outputs": [{"name": "output_0", "shape": [None, 1], "dtype": "float32"}],
            "reference": {"inputs": ["features"], "outputs": ["output_0"], "n_labeled": n_labeled,
                          "target_key": "y_true"}, "edgekit_version": "0.1.0"}
    (ex / "example.json").write_text(json.dumps(info))
    arts = []
    for precision, (wv, bv) in (variants or {"fp32": (w, b)}).items():
        rel = f"model_{precision}.onnx"
        write_onnx(ex / "exports" / rel, wv, bv, task)
        arts.append(artifact_entry(ex / "exports", "onnx", precision, rel, 1))
    mf.save(ex / "exports" / "manifest.json", {
        "edgekit_version": "0.1.0", "created": "2026-01-01T00:00:00Z",
        "source": {"path": "../saved_model/1", "fingerprint": "", "example": name, "task": task,
                   "signature": "serving_default", "inputs": info["inputs"], "outputs": info["outputs"]},
        "metadata": {}, "artifacts": arts, "failures": list(failures or [])})
    return ex


def weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The (w, b) :func:`make_example` uses for ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((F, 1)), np.array([0.1])

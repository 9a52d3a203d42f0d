"""The Keras model as the reference: loading a ``.keras`` file safely, its inputs, its predictions.

Keras is imported inside the functions, under the TensorFlow backend: a ``.keras`` file saved on
any backend (JAX, torch, TensorFlow) holds backend-neutral weights and loads there bit-identically.
:func:`load_keras` refuses, before Keras deserializes anything, a file whose config holds a
``Lambda`` layer or a custom class this process has not registered, naming the layer (Keras' own
safe_mode message names neither). Loading uses ``compile=False``: export and verify never train,
and a torch-saved file stores its optimizer under a torch-only path that the TensorFlow backend
cannot read (the same goes for custom losses and metrics).

:func:`keras_outputs` runs ``model.predict`` and names the outputs as ``model.export`` does
(``output_0``, ``output_1``, ... in ``model.outputs`` order); :func:`integer_ranges` reads the
valid id range of each integer input from the Embedding (or CategoryEncoding) layer it feeds.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import DependencyError, InputError, UsageError
from edgekit.core.text import one_line

KERAS_PACKAGES = ("keras", "keras_hub", "keras_cv", "keras_nlp")
UNSAFE_HOW = ("--unsafe (edgekit.export(..., unsafe=True)) to load it anyway: it runs code stored in the "
              "file, so only for files you trust")
PREDICT_BATCH = 256


def keras_module():
    """Import Keras under the TensorFlow backend.

    Raises:
        UsageError: Keras is already imported in this process with another backend (the backend
            is fixed at import: ``edgekit.export`` then runs the export in a TensorFlow subprocess).
        DependencyError: Keras or TensorFlow is not installed.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
    except ImportError as exc:
        raise DependencyError("Keras is needed to load a .keras model", got=str(exc),
                              expected="pip install 'edgekit[export]' (or make setup)") from exc
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise UsageError("Keras runs on another backend in this process", got=backend,
                         expected="KERAS_BACKEND=tensorflow before keras is imported (edgekit exports "
                                  "and verifies under TensorFlow; a .keras from any backend loads there)")
    return keras


# ---------------------------------------------------------------- safe loading
def _objects(node: Any, layer: str | None = None) -> Iterator[tuple[dict, str | None]]:
    """Every serialized object dict in a Keras config, with the name of the layer holding it."""
    if isinstance(node, dict):
        if "class_name" in node:
            cfg = node.get("config")
            name = cfg.get("name") if isinstance(cfg, dict) and isinstance(cfg.get("name"), str) else None
            yield node, name or layer
            layer = name or layer
        for value in node.values():
            yield from _objects(value, layer)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value, layer)


def unsafe_objects(config: dict, registered: set[str] | None = None) -> list[str]:
    """What safe_mode would refuse in a ``.keras`` config, one description per object.

    Args:
        config: the parsed ``config.json`` of a ``.keras`` file.
        registered: names of the custom objects registered in this process (default None: ask Keras).

    Returns:
        e.g. ``["Lambda layer 'double' (Python code)", "custom class 'my>Scale' in layer 'scale3'
        (not registered)"]``; empty when the file is safe to load.
    """
    if registered is None:
        registered = set(keras_module().saving.get_custom_objects())
    found: list[str] = []
    for obj, layer in _objects(config):
        cls = str(obj.get("class_name"))
        module = obj.get("module")
        if cls == "Lambda":
            found.append(f"Lambda layer {layer!r} (Python code)")
        elif cls in ("__lambda__", "function") and module and str(module).split(".")[0] not in KERAS_PACKAGES:
            found.append(f"Python function in layer {layer!r}")
        elif cls != "__keras_tensor__" and not cls.startswith("__") and \
                (module is None or str(module).split(".")[0] not in KERAS_PACKAGES):
            reg = obj.get("registered_name") or cls
            if reg not in registered and cls not in registered:
                found.append(f"custom class {reg!r} in layer {layer!r} (not registered in this process)")
    return list(dict.fromkeys(found))


def read_config(path: Path) -> dict:
    """``config.json`` of a ``.keras`` file (a zip), without Keras.

    Raises:
        InputError: not a zip, or no readable config.json.
    """
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InputError("not a Keras .keras file", got=f"{path}: {one_line(exc, 200)}",
                         expected="a file written by model.save('model.keras') (Keras 3)") from exc


def load_keras(path: Path, unsafe: bool = False):
    """Load a ``.keras`` file under the TensorFlow backend, ``compile=False``.

    Args:
        path: the ``.keras`` file.
        unsafe: load Lambda layers and other stored code (``safe_mode=False``; default False).
            A warning is issued: the file's code runs in this process.

    Raises:
        InputError: not a .keras file; a Lambda layer or an unregistered custom class (named) when
            ``unsafe`` is False; Keras cannot deserialize it.
    """
    path = Path(path)
    config = read_config(path)
    keras = keras_module()
    if not unsafe:
        bad = unsafe_objects(config, set(keras.saving.get_custom_objects()))
        if bad:
            more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
            lambdas = any("custom class" not in b for b in bad)
            raise InputError(f"{path.name} holds {bad[0]}{more}, which safe_mode refuses", got=str(path),
                             expected=UNSAFE_HOW if lambdas else
                             "register the class (@keras.saving.register_keras_serializable) and call "
                             "edgekit.export(model) in the process that defines it")
    else:
        warnings.warn(f"loading {path} with safe_mode=False: code stored in the file runs in this process",
                      stacklevel=2)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:  # Keras raises ValueError/TypeError/... for files it cannot rebuild
        raise InputError("Keras cannot load the model", got=f"{path}: {one_line(exc, 300)}",
                         expected="a .keras file whose layers this Keras can rebuild (custom classes "
                                  "registered)") from exc


# ---------------------------------------------------------------- inputs and outputs
def input_specs(model) -> list[dict]:
    """The model's inputs as export sees them: ``[{"name", "shape" (None = unknown), "dtype"}]``.

    The batch axis is always None. Names are the ``keras.Input`` names, which ``model.export``
    uses as the serving signature's input names.

    Raises:
        InputError: the model was never built (no input signature).
    """
    keras_module()
    from keras import tree
    from keras.src.export.export_utils import get_input_signature  # pinned Keras 3.15

    try:
        sig = get_input_signature(model)
    except (TypeError, ValueError) as exc:
        raise InputError("the Keras model has no input signature", got=one_line(exc, 200),
                         expected="a built model (keras.Input, or called once on data)") from exc
    specs = []
    for i, spec in enumerate(tree.flatten(sig)):
        shape = list(spec.shape or ())
        specs.append({"name": str(getattr(spec, "name", None) or f"input_{i}"),
                      "shape": [None] + [None if d is None else int(d) for d in shape[1:]],
                      "dtype": str(np.dtype(spec.dtype)) if spec.dtype != "bool" else "bool"})
    return specs


def output_names(model) -> list[str]:
    """``output_0``, ``output_1``, ...: the names ``model.export`` gives ``model.outputs``."""
    outs = getattr(model, "outputs", None) or [None]
    return [f"output_{i}" for i in range(len(outs))]


def _structure(model, feeds: dict[str, np.ndarray]):
    names = [s.name for s in getattr(model, "inputs", None) or []]
    if len(feeds) == 1:
        return next(iter(feeds.values()))
    if names and set(names) == set(feeds):
        struct = getattr(model, "_inputs_struct", None)
        if isinstance(struct, dict):
            return {k: feeds[v.name] for k, v in struct.items()}
        return [feeds[n] for n in names]
    return feeds


def keras_outputs(model, feeds: dict[str, np.ndarray], names: list[str] | None = None) -> dict[str, np.ndarray]:
    """``model.predict`` (inference mode) on ``feeds`` keyed by input name.

    Args:
        model: a Keras model (TensorFlow backend).
        feeds: arrays keyed by input name, one batch.
        names: output names in ``model.outputs`` order (default None: :func:`output_names`).

    Returns:
        ``{output name: array}``.
    """
    out = model.predict(_structure(model, feeds), batch_size=PREDICT_BATCH, verbose=0)
    if isinstance(out, dict):
        arrays = [np.asarray(out[k]) for k in sorted(out)]
    elif isinstance(out, (list, tuple)):
        arrays = [np.asarray(a) for a in out]
    else:
        arrays = [np.asarray(out)]
    names = names or [f"output_{i}" for i in range(len(arrays))]
    if len(names) != len(arrays):
        raise InputError("the Keras model returns a different number of outputs than its SavedModel",
                         got=len(arrays), expected=f"{len(names)} ({names})")
    return dict(zip(names, arrays, strict=True))


# ---------------------------------------------------------------- integer ranges
def _producers(tensor) -> tuple[Any, list]:
    hist = getattr(tensor, "_keras_history", None)
    if hist is None:
        return None, []
    op, node_index = hist[0], hist[1]
    node = op._inbound_nodes[node_index] if getattr(op, "_inbound_nodes", None) else None
    return op, list(getattr(node, "input_tensors", []) or [])


def integer_ranges(model) -> dict[str, tuple[int, int, str]]:
    """``{input name: (lo, hi, why)}``: valid ids ``[lo, hi)`` of integer inputs, from the layers they feed.

    An input that reaches an ``Embedding`` (``input_dim``) or ``CategoryEncoding`` (``num_tokens``)
    through single-input layers gets ``[0, size)``; several such layers: the smallest size.
    """
    keras = keras_module()
    sizes: dict[str, list[tuple[int, str]]] = {}
    inputs = {id(t): t.name for t in getattr(model, "inputs", None) or []}
    layers = list(getattr(model, "_flatten_layers", lambda **_: model.layers)(include_self=False, recursive=True)) \
        if hasattr(model, "_flatten_layers") else list(model.layers)
    for layer in layers:
        if isinstance(layer, keras.layers.Embedding):
            size, why = int(layer.input_dim), f"Embedding {layer.name!r} input_dim {layer.input_dim}"
        elif isinstance(layer, keras.layers.CategoryEncoding):
            size, why = int(layer.num_tokens), f"CategoryEncoding {layer.name!r} num_tokens {layer.num_tokens}"
        else:
            continue
        for node in getattr(layer, "_inbound_nodes", []) or []:
            for t in list(getattr(node, "input_tensors", []) or []):
                for _ in range(64):  # walk back through single-input layers to a model input
                    if id(t) in inputs:
                        sizes.setdefault(inputs[id(t)], []).append((size, why))
                        break
                    op, parents = _producers(t)
                    if op is None or len(parents) != 1:
                        break
                    t = parents[0]
    if not sizes and isinstance(model, keras.Sequential) and len(inputs) == 1:
        first = model.layers[0] if model.layers else None
        if isinstance(first, keras.layers.Embedding):
            sizes[next(iter(inputs.values()))] = [(int(first.input_dim), f"Embedding {first.name!r} "
                                                   f"input_dim {first.input_dim}")]
    return {name: (0, *min(found)) for name, found in sizes.items()}

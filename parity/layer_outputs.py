"""The Keras model with every layer's output exposed: the reference side of ``edgekit explain``.

:func:`layer_outputs` loads nothing itself: give it a Keras model (loaded with
:func:`edgekit.parity.keras_model.load_keras`) and golden inputs keyed by input name; it builds
one functional model whose outputs are the outputs of every top-level layer (a nested model
counts as one layer; a layer called more than once or with several outputs is left out, said in
``skipped``), runs it once in inference mode and returns the values in layer order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LayerOutput:
    """One Keras layer's output on the golden inputs.

    Attributes:
        name: the layer's name (what converters keep in their tensor names).
        kind: the layer's class name (``Dense``, ``Conv2D``, ...).
        value: its output, batch first.
        index: position in the model's layer order (topological for functional models).
        output: the model output this layer's output is (``output_0``, ...: ``model.export``'s
            names), or None.
        inbound: the layers whose outputs this layer reads (model inputs not included).
    """

    name: str
    kind: str
    value: np.ndarray
    index: int
    output: str | None = None
    inbound: tuple[str, ...] = ()


@dataclass
class KerasLayers:
    """Every exposed layer's output, in layer order, and the layers left out with why."""

    layers: list[LayerOutput]
    skipped: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [lay.name for lay in self.layers]


def _single_output(layer):
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if len(nodes) != 1:
        return None, f"called {len(nodes)} times" if nodes else "never called"
    out = nodes[0].output_tensors
    if len(out) != 1:
        return None, f"{len(out)} outputs"
    return out[0], ""


def _inbound(layer) -> tuple[str, ...]:
    names = []
    for node in getattr(layer, "_inbound_nodes", None) or []:
        for t in getattr(node, "input_tensors", None) or []:
            hist = getattr(t, "_keras_history", None)
            op = hist[0] if hist else None
            if op is not None and type(op).__name__ != "InputLayer":
                names.append(op.name)
    return tuple(dict.fromkeys(names))


def layer_outputs(model, feeds: dict[str, np.ndarray], batch_size: int = 256) -> KerasLayers:
    """Run ``feeds`` through ``model`` with every top-level layer's output exposed.

    Args:
        model: a built Keras model (functional or Sequential), TensorFlow backend.
        feeds: golden inputs keyed by input name, one batch.
        batch_size: rows per predict call (default 256).

    Returns:
        A :class:`KerasLayers` in the model's layer order.
    """
    from edgekit.parity.keras_model import _structure, keras_module

    keras = keras_module()
    tensors, kept, skipped = [], [], {}
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        t, why = _single_output(layer)
        if t is None:
            skipped[layer.name] = why
            continue
        tensors.append(t)
        kept.append((i, layer))
    if not tensors:
        return KerasLayers([], skipped)
    probe = keras.Model(model.inputs, tensors)
    out = probe.predict(_structure(model, feeds), batch_size=batch_size, verbose=0)
    if not isinstance(out, (list, tuple)):
        out = [out]
    outs = {id(t): f"output_{i}" for i, t in enumerate(getattr(model, "outputs", None) or [])}
    layers = [LayerOutput(layer.name, type(layer).__name__, np.asarray(v), i, outs.get(id(t)), _inbound(layer))
              for (i, layer), v, t in zip(kept, out, tensors, strict=True)]
    return KerasLayers(layers, skipped)

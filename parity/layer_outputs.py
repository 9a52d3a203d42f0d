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


def _graph_tensors(model) -> set[int]:
    """ids of every symbolic tensor of ``model``'s own graph (walked back from its outputs)."""
    seen: set[int] = set()
    stack = list(getattr(model, "outputs", None) or [])
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        hist = getattr(t, "_keras_history", None)
        if hist is None:
            continue
        op, node_index = hist[0], hist[1]
        nodes = getattr(op, "_inbound_nodes", None) or []
        if node_index < len(nodes):
            stack.extend(getattr(nodes[node_index], "input_tensors", None) or [])
    return seen


def _node(layer, graph: set[int]):
    """The one call of ``layer`` inside the model's graph (a layer may also be called by other models),
    or ``(None, why)``."""
    nodes = [n for n in getattr(layer, "_inbound_nodes", None) or []
             if any(id(t) in graph for t in n.output_tensors)]
    if len(nodes) != 1:
        return None, f"called {len(nodes)} times in the model" if nodes else "not in the model's graph"
    if len(nodes[0].output_tensors) != 1:
        return None, f"{len(nodes[0].output_tensors)} outputs"
    return nodes[0], ""


def _inbound(node) -> tuple[str, ...]:
    names = []
    for t in getattr(node, "input_tensors", None) or []:
        hist = getattr(t, "_keras_history", None)
        op = hist[0] if hist else None
        if op is not None and type(op).__name__ != "InputLayer":
            names.append(op.name)
    return tuple(dict.fromkeys(names))


def layer_outputs(model, feeds: dict[str, np.ndarray], batch_size: int = 256, prefix: str = "",
                  inbound: tuple[str, ...] = ()) -> KerasLayers:
    """Run ``feeds`` through ``model`` with every layer's output exposed.

    A nested model (a Sequential inside a functional model) is expanded: its layers come first, as
    ``outer/inner`` (converters keep that path), then the nested model itself (its output).

    Args:
        model: a built Keras model (functional or Sequential), TensorFlow backend.
        feeds: golden inputs keyed by input name, one batch.
        batch_size: rows per predict call (default 256).
        prefix: prepended to layer names (default "": the recursion names nested layers with it).
        inbound: what the model's inputs come from, for its first layers (default none).

    Returns:
        A :class:`KerasLayers` in the model's layer order.
    """
    from edgekit.parity.keras_model import _structure, keras_module

    keras = keras_module()
    graph = _graph_tensors(model)
    tensors, kept, skipped = [], [], {}
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        node, why = _node(layer, graph)
        if node is None:
            skipped[prefix + layer.name] = why
            continue
        nested = isinstance(layer, keras.Model) and len(node.input_tensors) == 1 and \
            bool(getattr(layer, "layers", None))
        tensors.append(node.output_tensors[0])
        if nested:
            tensors.append(node.input_tensors[0])
        kept.append((i, layer, node, nested))
    if not tensors:
        return KerasLayers([], skipped)
    probe = keras.Model(model.inputs, tensors)
    out = probe.predict(_structure(model, feeds), batch_size=batch_size, verbose=0)
    if not isinstance(out, (list, tuple)):
        out = [out]
    outs = {id(t): f"output_{i}" for i, t in enumerate(getattr(model, "outputs", None) or [])} if not prefix else {}
    values = iter(out)
    layers: list[LayerOutput] = []
    for _i, layer, node, nested in kept:
        value = np.asarray(next(values))
        ins = tuple(prefix + n for n in _inbound(node)) or (inbound if any(
            id(t) in {id(x) for x in model.inputs} for t in node.input_tensors) else ())
        name = prefix + layer.name
        tail: tuple[str, ...] = ()
        if nested:
            inner_in = np.asarray(next(values))
            try:
                inner = layer_outputs(layer, {layer.inputs[0].name: inner_in}, batch_size, prefix=name + "/",
                                      inbound=ins)
            except Exception as exc:  # noqa: BLE001 - the nested model then counts as one layer
                skipped[name + "/*"] = f"layers not exposed ({type(exc).__name__})"
            else:
                tail = tuple(lay.name for lay in inner.layers if lay.output == "inner")
                layers.extend(LayerOutput(x.name, x.kind, x.value, len(layers) + j, None, x.inbound)
                              for j, x in enumerate(inner.layers))
                skipped.update(inner.skipped)
        layers.append(LayerOutput(name, type(layer).__name__, value, len(layers), outs.get(id(node.output_tensors[0])),
                                  tail or ins))
    if prefix:  # inside a nested model: its outputs are marked so the outer entry can be wired to them
        last = {id(t) for t in getattr(model, "outputs", None) or []}
        layers = [LayerOutput(x.name, x.kind, x.value, x.index, "inner" if any(
            id(n.output_tensors[0]) in last for _, lay, n, _ in kept if prefix + lay.name == x.name) else None,
            x.inbound) for x in layers]
    return KerasLayers(layers, skipped)

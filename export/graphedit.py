"""A small editor for frozen ``GraphDef``s: a name index, node insertion, Identity-skipping lookups
and pruning. Used by the graph rewrites (:mod:`edgekit.export.legalize`) and the TF.js fix-ups."""

from __future__ import annotations

#: ops that are pass-through for pattern matching.
_TRANSPARENT = ("Identity", "Snapshot", "StopGradient")


def _base(ref: str) -> str:
    return ref.lstrip("^").split(":")[0]


class GraphEditor:
    """A GraphDef with a name index and the few edits the rewrites need.

    Args:
        graph_def: edited in place.
        shapes: ``{tensor name: list of dims (None = unknown)}`` of the graph before any edit
            (default None: no shape information).
    """

    def __init__(self, graph_def, shapes: dict | None = None):
        self.gd = graph_def
        self.shapes = shapes or {}
        self.nodes = {n.name: n for n in graph_def.node}

    def node(self, ref: str):
        return self.nodes.get(_base(ref))

    def source(self, ref: str) -> str:
        """``ref`` with Identity-like nodes skipped (the tensor that really feeds it)."""
        seen = 0
        while seen < 64:
            n = self.node(ref)
            if n is None or n.op not in _TRANSPARENT or not n.input:
                return ref
            ref = n.input[0]
            seen += 1
        return ref

    def unique(self, stem: str) -> str:
        name, i = stem, 0
        while name in self.nodes:
            i += 1
            name = f"{stem}_{i}"
        return name

    def add(self, op: str, stem: str, inputs: list[str], attrs: dict | None = None, like=None):
        """Add a node; ``like`` copies its device (and its ``T`` attr unless given)."""
        n = self.gd.node.add()
        n.name, n.op = self.unique(stem), op
        n.input.extend(inputs)
        if like is not None:
            n.device = like.device
            if "T" in like.attr and not (attrs and "T" in attrs):
                n.attr["T"].CopyFrom(like.attr["T"])
        for k, v in (attrs or {}).items():
            n.attr[k].CopyFrom(v)
        self.nodes[n.name] = n
        return n

    def const(self, stem: str, value, dtype_enum: int, like=None):
        import numpy as np
        from tensorflow.core.framework import attr_value_pb2
        from tensorflow.python.framework import dtypes, tensor_util

        np_dtype = dtypes.as_dtype(dtype_enum).as_numpy_dtype
        tensor = tensor_util.make_tensor_proto(np.asarray(value, dtype=np_dtype))
        attrs = {"dtype": attr_value_pb2.AttrValue(type=dtype_enum),
                 "value": attr_value_pb2.AttrValue(tensor=tensor)}
        n = self.add("Const", stem, [], attrs)
        if like is not None:
            n.device = like.device
        return n

    def dtype_of(self, node) -> int:
        return node.attr["T"].type

    def const_value(self, ref: str):
        """The numpy value of a Const feeding ``ref`` (through Identity nodes), else None."""
        from tensorflow.python.framework import tensor_util

        n = self.node(self.source(ref))
        if n is None or n.op != "Const":
            return None
        return tensor_util.MakeNdarray(n.attr["value"].tensor)

    def shape(self, ref: str):
        ref = ref if ":" in ref else f"{ref}:0"
        return self.shapes.get(ref.lstrip("^"))

    def replace_node(self, node, op: str, inputs: list[str], keep_attrs: tuple = ("T",)) -> None:
        """Turn ``node`` into ``op(inputs)`` keeping its name, so every consumer stays wired."""
        for key in [k for k in node.attr if k not in keep_attrs]:
            del node.attr[key]
        node.op = op
        controls = [i for i in node.input if i.startswith("^")]
        del node.input[:]
        node.input.extend(inputs + controls)

    def prune(self, keep: list[str]) -> int:
        """Drop nodes nothing in ``keep`` (node names) depends on; returns how many went."""
        needed, stack = set(), list(keep)
        while stack:
            name = _base(stack.pop())
            if name in needed or name not in self.nodes:
                continue
            needed.add(name)
            stack.extend(self.nodes[name].input)
        drop = [n for n in self.gd.node if n.name not in needed and n.op != "Placeholder"]
        for n in drop:
            self.gd.node.remove(n)
            del self.nodes[n.name]
        return len(drop)

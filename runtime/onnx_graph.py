"""Read an ONNX file's top-level nodes and expose their outputs, on the protobuf wire format.

``edgekit explain`` needs every node output of an ONNX graph as a graph output (Polygraphy's
``mark all``). The ``onnx`` package is an export-side dependency, not a device one, so this edits
the serialized ``ModelProto`` directly: a ``ModelProto`` holds its ``GraphProto`` in field 7, the
graph holds ``NodeProto`` s in field 1 and output ``ValueInfoProto`` s in field 12, a node holds its
inputs (1), outputs (2), name (3) and op type (4). A ``ValueInfoProto`` with only a name (field 1)
is a valid output: onnxruntime infers its type and shape. Nothing else in the file changes.
"""

from __future__ import annotations

from dataclasses import dataclass

_GRAPH, _NODE, _GRAPH_OUTPUT, _INITIALIZER = 7, 1, 12, 5
_N_INPUT, _N_OUTPUT, _N_NAME, _N_OP = 1, 2, 3, 4


@dataclass(frozen=True)
class Node:
    """One top-level ONNX node: name, op type, input and output tensor names."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _fields(buf: bytes):
    """``(field number, wire type, start of the field, start of its payload, end)`` of each field."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            yield field, wire, start, start, pos
        elif wire == 1:
            yield field, wire, start, pos, pos + 8
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield field, wire, start, pos, pos + length
            pos += length
        elif wire == 5:
            yield field, wire, start, pos, pos + 4
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (not an ONNX ModelProto?)")


def _graph_span(model: bytes) -> tuple[int, int, int]:
    for field, wire, start, payload, end in _fields(model):
        if field == _GRAPH and wire == 2:
            return start, payload, end
    raise ValueError("no graph in the ONNX file")


def _text(buf: bytes, a: int, b: int) -> str:
    return buf[a:b].decode("utf-8", "replace")


def nodes(model: bytes) -> tuple[list[Node], set[str], list[str]]:
    """The graph's nodes in file order (ONNX requires topological order), its initializer names
    and its output names."""
    _, g0, g1 = _graph_span(model)
    graph = model[g0:g1]
    found, inits, outs = [], set(), []
    for field, wire, _, a, b in _fields(graph):
        if wire != 2:
            continue
        if field == _NODE:
            node = graph[a:b]
            parts: dict[int, list[str]] = {_N_INPUT: [], _N_OUTPUT: [], _N_NAME: [], _N_OP: []}
            for f, w, _, x, y in _fields(node):
                if w == 2 and f in parts:
                    parts[f].append(_text(node, x, y))
            found.append(Node(next(iter(parts[_N_NAME]), ""), next(iter(parts[_N_OP]), ""),
                              tuple(parts[_N_INPUT]), tuple(parts[_N_OUTPUT])))
        elif field in (_INITIALIZER, _GRAPH_OUTPUT):
            msg = graph[a:b]
            name = next((_text(msg, x, y) for f, w, _, x, y in _fields(msg) if f == 1 and w == 2), "")
            # TensorProto's name is field 8; ValueInfoProto's is field 1
            if field == _INITIALIZER:
                name = next((_text(msg, x, y) for f, w, _, x, y in _fields(msg) if f == 8 and w == 2), "")
                inits.add(name)
            else:
                outs.append(name)
    return found, inits, outs


def with_outputs(model: bytes, names: list[str]) -> bytes:
    """``model`` with each of ``names`` appended as a graph output (type left to onnxruntime)."""
    start, g0, g1 = _graph_span(model)
    extra = bytearray()
    for name in names:
        raw = name.encode()
        info = bytes([0x0A]) + _encode_varint(len(raw)) + raw          # ValueInfoProto.name
        extra += bytes([(_GRAPH_OUTPUT << 3) | 2]) + _encode_varint(len(info)) + info
    graph = model[g0:g1] + bytes(extra)
    return model[:start] + bytes([(_GRAPH << 3) | 2]) + _encode_varint(len(graph)) + graph + model[g1:]

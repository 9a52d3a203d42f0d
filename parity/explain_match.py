"""Matching a variant's intermediate tensors to the Keras layers they compute, by name.

Converters keep the Keras layer path in their tensor and op names: TFLite
``StatefulPartitionedCall/functional_1/d1_1/MatMul;.../d1_1/Relu`` (fused ops join the names of
what they fused with ``;``), ONNX ``PartitionedCall/.../functional_1/d1_1/Relu:0``, TF.js
``StatefulPartitionedCall/functional_1/d1_1/Relu``, Core ML's MIL the same with ``/`` turned into
``_`` (``..._functional_1_d1_1_Relu``). The segment after the model's own name
(``functional_1``: the Keras tracing scope appends ``_<n>``) is the layer.

For each Keras layer (in layer order) its tensor is the last one, in execution order, that
names it, names no later layer (else the layer was fused into that later one: it is compared
there, "across a fusion at the next layer both sides share"), and has the layer's shape (an
NCHW tensor of an NHWC layer is compared transposed). A layer whose output is a model output is
compared at the variant's output tensor, whatever it is called (``Identity``, ``output_0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_SUFFIX = re.compile(r"^(.+)_(\d+)$")


def _strip(seg: str) -> str:
    return seg.split(":", 1)[0]


def _is(seg: str, name: str) -> bool:
    m = _SUFFIX.match(seg)
    return seg == name or (m is not None and m.group(1) == name)


def _nested(first: str, rest: list[str], names: set[str]) -> str:
    """``first`` or, when it is a nested model whose layers are in ``names`` (``outer/inner``), the
    deepest ``outer/inner`` the following segments name."""
    best = first
    for seg in rest:
        inner = {n[len(best) + 1:] for n in names if n.startswith(best + "/") and "/" not in n[len(best) + 1:]}
        found = _resolve(seg, inner) if inner else None
        if found is None:
            break
        best = f"{best}/{found}"
    return best


def layer_of_path(path: str, model_name: str, names: set[str]) -> str | None:
    """The Keras layer a ``/``-separated op path belongs to, or None.

    The segment right after the model's scope (``functional_1``); without that scope, the first
    segment naming a layer. ``d1_1`` names layer ``d1`` (tracing suffix) unless a layer is called
    ``d1_1`` and no layer ``d1`` exists.
    """
    if "/" not in path and model_name:
        found = _sanitized(path, model_name, names)
        if found is not None:
            return found
    segs = [_strip(s) for s in path.split("/") if s]
    top = {n for n in names if "/" not in n}
    for i, seg in enumerate(segs[:-1]):
        if _is(seg, model_name) and seg not in names:
            found = _resolve(segs[i + 1], top)
            if found is not None:
                return _nested(found, segs[i + 2:], names)
    for i, seg in enumerate(segs):
        found = _resolve(seg, top)
        if found is not None:
            return _nested(found, segs[i + 1:], names)
    return None


def _sanitized(path: str, model_name: str, names: set[str]) -> str | None:
    """A name whose ``/`` became ``_`` (Core ML's MIL: ``..._mlp_1_d1_1_MatMul``): the layer right
    after the model's scope, its tracing suffix ``_<n>`` preferred."""
    scope = re.sub(r"[^A-Za-z0-9_]", "_", model_name)  # MIL names: "mobilenetv2_0.35_96" -> "..._0_35_96"
    m = re.search(r"(?:^|_)" + re.escape(scope) + r"(?:_\d+)?_(.+)$", path)
    if m is None:
        return None
    rest, level, best = m.group(1), {n for n in names if "/" not in n}, None
    while level:
        found = None
        for pattern in (r"_\d+(?:_|$)", r"(?:_|$)"):
            for name in sorted(level, key=len, reverse=True):
                hit = re.match(re.escape(name) + pattern, rest)
                if hit:
                    found, rest = name, rest[hit.end():]
                    break
            if found:
                break
        if found is None:
            break
        best = found if best is None else f"{best}/{found}"
        level = {n[len(best) + 1:] for n in names if n.startswith(best + "/") and "/" not in n[len(best) + 1:]}
    return best


def _resolve(seg: str, names: set[str]) -> str | None:
    m = _SUFFIX.match(seg)
    if m is not None and m.group(1) in names:
        return m.group(1)
    return seg if seg in names else None


def tensor_layers(name: str, op_name: str, model_name: str, names: set[str]) -> set[str]:
    """Every layer a (possibly fused, ``;``-joined) tensor or op name refers to."""
    found = set()
    for text in {name, op_name}:
        for path in text.split(";"):
            lay = layer_of_path(path, model_name, names)
            while lay is not None:       # a nested layer belongs to its outer model too
                found.add(lay)
                lay = lay.rsplit("/", 1)[0] if "/" in lay else None
    return found


@dataclass(frozen=True)
class Match:
    """Where one Keras layer is compared: the variant tensor, its op, and how its values line up."""

    layer: str
    tensor: str | None
    op: str | None
    transpose: tuple[int, ...] | None = None
    fused_into: str | None = None
    why: str = ""


NCHW_TO_NHWC = (0, 2, 3, 1)


def layouts(keras: np.ndarray, got: np.ndarray) -> list[tuple[int, ...] | None]:
    """The ways ``got`` lines up with ``keras``: as is (None) and/or NCHW -> NHWC. Both when the shape
    cannot tell (H == W == C): the comparison then takes the closer one."""
    out: list[tuple[int, ...] | None] = []
    if got.shape == keras.shape:
        out.append(None)
    if got.ndim == 4 and keras.ndim == 4 and got.transpose(NCHW_TO_NHWC).shape == keras.shape:
        out.append(NCHW_TO_NHWC)
    return out


def _aligned(keras: np.ndarray, got: np.ndarray) -> tuple[bool, tuple[int, ...] | None]:
    found = layouts(keras, got)
    return (True, found[0]) if found else (False, None)


def match_layers(keras_layers: list, values: dict[str, np.ndarray], producers: dict, model_name: str,
                 outputs: dict[str, str] | None = None) -> list[Match]:
    """One :class:`Match` per Keras layer (``keras_layers``: :class:`LayerOutput` in layer order).

    Args:
        keras_layers: the Keras side, in layer order.
        values: the variant's intermediates ``{tensor: array}`` in execution order.
        producers: ``{tensor: Producer}`` (op type, op name, input tensors).
        model_name: the Keras model's name (the scope segment before the layer's).
        outputs: ``{model output name: tensor}`` of the variant (default None): a layer whose output
            is a model output is compared at that tensor, whatever it is called.
    """
    names = {k.name for k in keras_layers}
    order = {k.name: i for i, k in enumerate(keras_layers)}
    refs: dict[str, set[str]] = {}
    for t in values:
        p = producers.get(t)
        refs[t] = tensor_layers(t, p.name if p else "", model_name, names)
    matches = []
    outputs = outputs or {}
    for k in keras_layers:
        out_t = outputs.get(k.output) if getattr(k, "output", None) else None
        if out_t in values and _aligned(k.value, values[out_t])[0]:
            p = producers.get(out_t)
            matches.append(Match(k.name, out_t, p.op if p else None, _aligned(k.value, values[out_t])[1]))
            continue
        cands = [t for t in values if k.name in refs[t]]
        if not cands:
            matches.append(Match(k.name, None, None, why="no tensor of the variant names this layer"))
            continue
        later = [t for t in cands if any(order[o] > order[k.name] and not k.name.startswith(o + "/")
                                         for o in refs[t])]
        own = [t for t in cands if t not in later]
        chosen = None
        for t in reversed(own):
            v = values[t]
            if (v.dtype.kind == "f") != (k.value.dtype.kind == "f"):
                continue
            ok, perm = _aligned(k.value, v)
            if ok:
                chosen = Match(k.name, t, producers[t].op if t in producers else None, perm)
                break
        if chosen is None:
            if later:
                into = min((o for o in refs[later[-1]] if order[o] > order[k.name]), key=order.__getitem__)
                chosen = Match(k.name, None, None, fused_into=into, why=f"into {into}")
            else:
                shapes = sorted({str(tuple(values[t].shape[1:])) for t in own})
                chosen = Match(k.name, None, None, why=f"shape differs: Keras {tuple(k.value.shape[1:])}, "
                                                       f"variant {', '.join(shapes)}")
        matches.append(chosen)
    return matches

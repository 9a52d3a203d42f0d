"""Graph legalisation: small, named rewrites of a frozen serving graph that a converter or runtime needs.

Each :class:`Rewrite` replaces one op pattern that some target cannot convert or run with ops
it can, computing the same values (checked against the unrewritten SavedModel by
:mod:`edgekit.export.graph` before a converter sees the graph). A rewrite names the formats
that need it — measured here with tensorflow 2.19, tensorflowjs 4.22, coremltools 9.0,
tf2onnx 1.17 — and is applied only for those, so a converter that already handles an op (TFLite
turns ``0.5·x·erfc(−x/√2)`` into its own GELU kernel, but has no ``Erf``) keeps its own lowering.

The rewrites work on a ``GraphDef`` whose functions are inlined and whose variables are
constants (``edgekit.export.graph.freeze``). :func:`legalize` applies the rewrites a format
needs and returns what it did, e.g. ``[{"name": "erfc->1-erf", "count": 1}]``, which the
exporters record in the manifest (``rewrites``) and verify's rows show.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Callable

from edgekit.export.graphedit import GraphEditor


# ----------------------------------------------------------------------------- rewrites
def _erfc(g: GraphEditor) -> int:
    """Erfc(x) -> 1 - Erf(x): exact in real arithmetic; in float32 the two agree to ~1 ulp of 1
    (an absolute 6e-8), which is what Keras' exact GELU (0.5 x erfc(-x/sqrt 2)) multiplies by x."""
    count = 0
    for n in [n for n in g.gd.node if n.op == "Erfc"]:
        erf = g.add("Erf", f"{n.name}/edgekit_erf", [n.input[0]], like=n)
        one = g.const(f"{n.name}/edgekit_one", 1.0, g.dtype_of(n), like=n)
        g.replace_node(n, "Sub", [one.name, erf.name])
        count += 1
    return count


def _is_signbit(g: GraphEditor, ref: str, x: str) -> bool:
    """``ref`` computes Keras' signbit(x): Less(BitwiseAnd(Bitcast(x, int32), INT32_MIN), 0)."""
    less = g.node(g.source(ref))
    if less is None or less.op != "Less":
        return False
    band = g.node(g.source(less.input[0]))
    if band is None or band.op != "BitwiseAnd":
        return False
    for ref2 in band.input[:2]:
        cast = g.node(g.source(ref2))
        if cast is not None and cast.op == "Bitcast" and g.source(cast.input[0]) == g.source(x):
            return True
    return False


def _argmax_signbit(g: GraphEditor) -> int:
    """ArgMax/ArgMin(Select(x == 0 & signbit(x), -tiny, x)) -> ArgMax/ArgMin(x).

    keras.ops.argmax/argmin on floats first moves -0.0 just below +0.0 (a flush-to-zero fix for
    JAX, jax-ml/jax#24280), testing the sign bit with Bitcast + BitwiseAnd, which TFLite runs only
    as Flex ops and Core ML, TF.js and ONNX refuse. The indices are identical except where a
    row's extreme value is a tie between -0.0 and +0.0 (then the first of them is taken).
    """
    count = 0
    for n in [n for n in g.gd.node if n.op in ("ArgMax", "ArgMin")]:
        sel = g.node(g.source(n.input[0]))
        if sel is None or sel.op not in ("Select", "SelectV2") or len(sel.input) < 3:
            continue
        cond, x = g.node(g.source(sel.input[0])), sel.input[2]
        if cond is None or cond.op != "LogicalAnd":
            continue
        kinds = {g.node(g.source(r)).op if g.node(g.source(r)) is not None else "" for r in cond.input[:2]}
        if "Equal" not in kinds or not any(_is_signbit(g, r, x) for r in cond.input[:2]):
            continue
        n.input[0] = x
        count += 1
    return count


def _softsign(g: GraphEditor) -> int:
    """Softsign(x) -> x / (1 + |x|), its definition (TFLite builtins and TF.js lack Softsign)."""
    count = 0
    for n in [n for n in g.gd.node if n.op == "Softsign"]:
        x = n.input[0]
        absx = g.add("Abs", f"{n.name}/edgekit_abs", [x], like=n)
        one = g.const(f"{n.name}/edgekit_one", 1.0, g.dtype_of(n), like=n)
        den = g.add("AddV2", f"{n.name}/edgekit_den", [one.name, absx.name], like=n)
        g.replace_node(n, "RealDiv", [x, den.name])
        count += 1
    return count


def _expm1(g: GraphEditor) -> int:
    """Expm1(x) -> Exp(x) - 1 (coremltools and tf2onnx lack Expm1; Keras' elu/celu/selu use it).
    Loses relative precision only where |x| < ~1e-4, by at most 1 ulp of 1 (6e-8) absolute."""
    count = 0
    for n in [n for n in g.gd.node if n.op == "Expm1"]:
        ex = g.add("Exp", f"{n.name}/edgekit_exp", [n.input[0]], like=n)
        one = g.const(f"{n.name}/edgekit_one", 1.0, g.dtype_of(n), like=n)
        g.replace_node(n, "Sub", [ex.name, one.name])
        count += 1
    return count


def _positive_axes(g: GraphEditor) -> int:
    """Cumsum/Cumprod with a negative constant axis -> the same axis counted from the front.
    TF.js 4.22's cumsum on axis -1 returns a tensor of shape [undefined, n]."""
    count = 0
    for n in [n for n in g.gd.node if n.op in ("Cumsum", "Cumprod")]:
        axis = g.const_value(n.input[1])
        shape = g.shape(n.input[0])
        if axis is None or axis.ndim != 0 or int(axis) >= 0 or shape is None:
            continue
        pos = int(axis) % len(shape)
        c = g.const(f"{n.name}/edgekit_axis", pos, g.node(g.source(n.input[1])).attr["dtype"].type, like=n)
        n.input[1] = c.name
        count += 1
    return count


_EQ = re.compile(r"^([a-zA-Z]*),([a-zA-Z]*)->([a-zA-Z]*)$")


def einsum_plan(equation: str, shape_a, shape_b) -> dict | None:
    """How a two-operand einsum maps onto Transpose/Reshape/BatchMatMul, or None if it does not.

    Lowerable: no ellipsis, no label repeated inside an operand, every output label in an
    input, every contracted label of known size, at most one unknown dimension (the batch).

    Returns:
        ``{"sum_a": axes, "sum_b": axes, "perm_a", "perm_b", "shape_a", "shape_b", "matmul_rank",
        "shape_out", "perm_out"}`` (``None`` entries mean "no op needed").
    """
    m = _EQ.match(equation.replace(" ", ""))
    if not m or shape_a is None or shape_b is None:
        return None
    la, lb, lo = m.groups()
    if len(la) != len(shape_a) or len(lb) != len(shape_b):
        return None
    if len(set(la)) != len(la) or len(set(lb)) != len(lb) or len(set(lo)) != len(lo):
        return None
    if any(c not in la + lb for c in lo):
        return None
    size: dict[str, int | None] = {}
    for labels, shape in ((la, shape_a), (lb, shape_b)):
        for c, d in zip(labels, shape, strict=True):
            if d is not None and size.get(c) not in (None, d):
                return None  # broadcasting a size-1 axis: not handled
            size[c] = d if d is not None else size.get(c)
    sum_a = [i for i, c in enumerate(la) if c not in lb and c not in lo]
    sum_b = [i for i, c in enumerate(lb) if c not in la and c not in lo]
    la2 = "".join(c for c in la if c in lb or c in lo)
    lb2 = "".join(c for c in lb if c in la or c in lo)
    batch = [c for c in lo if c in la2 and c in lb2]
    contract = [c for c in la2 if c in lb2 and c not in lo]
    free_a = [c for c in la2 if c not in lb2]
    free_b = [c for c in lb2 if c not in la2]
    if any(size[c] is None for c in contract):
        return None
    unknown = [c for c in batch + free_a + free_b if size[c] is None]
    if len(unknown) > 1:
        return None

    def prod(labels):
        if any(size[c] is None for c in labels):
            return -1
        out = 1
        for c in labels:
            out *= size[c]
        return out

    def perm(src, order):
        p = [src.index(c) for c in order]
        return None if p == list(range(len(src))) else p

    rank3 = bool(batch)
    tgt_a = ([prod(batch)] if rank3 else []) + [prod(free_a), prod(contract)]
    tgt_b = ([prod(batch)] if rank3 else []) + [prod(contract), prod(free_b)]
    cur_a = [size[c] for c in batch + free_a + contract]
    cur_b = [size[c] for c in batch + contract + free_b]
    res = batch + free_a + free_b
    res_shape = [size[c] if size[c] is not None else -1 for c in res]
    mm_shape = ([prod(batch)] if rank3 else []) + [prod(free_a), prod(free_b)]
    def same(cur, tgt) -> bool:
        return len(cur) == len(tgt) and all(c == t or (c is None and t == -1) for c, t in zip(cur, tgt, strict=True))

    return {"sum_a": sum_a or None, "sum_b": sum_b or None,
            "perm_a": perm(list(la2), batch + free_a + contract), "perm_b": perm(list(lb2), batch + contract + free_b),
            "shape_a": None if same(cur_a, tgt_a) else tgt_a, "shape_b": None if same(cur_b, tgt_b) else tgt_b,
            "matmul": "BatchMatMulV2" if rank3 else "MatMul",
            "shape_out": None if same([size[c] for c in res], mm_shape) else res_shape,
            "perm_out": perm(res, list(lo))}


def _transpose(g: GraphEditor, n, stem: str, x: str, perm, tag: str) -> str:
    from tensorflow.core.framework import attr_value_pb2

    if perm is None:
        return x
    c = g.const(f"{stem}_{tag}_perm", perm, 3, like=n)
    return g.add("Transpose", f"{stem}_{tag}_t", [x, c.name], like=n,
                 attrs={"Tperm": attr_value_pb2.AttrValue(type=3)}).name


def _reshape(g: GraphEditor, n, stem: str, x: str, shape, tag: str) -> str:
    from tensorflow.core.framework import attr_value_pb2

    if shape is None:
        return x
    c = g.const(f"{stem}_{tag}_shape", shape, 3, like=n)
    return g.add("Reshape", f"{stem}_{tag}_r", [x, c.name], like=n,
                 attrs={"Tshape": attr_value_pb2.AttrValue(type=3)}).name


def _einsum(g: GraphEditor) -> int:
    """Two-operand Einsum -> [Sum] + [Transpose] + [Reshape] + MatMul/BatchMatMulV2 + [Reshape] +
    [Transpose], when :func:`einsum_plan` allows (TF.js' wasm backend has no Einsum kernel; its cpu
    backend and coremltools take only some equations). Same products and sums, summed in the
    same order up to float rounding."""
    from tensorflow.core.framework import attr_value_pb2

    count = 0
    for n in [n for n in g.gd.node if n.op == "Einsum"]:
        if len([i for i in n.input if not i.startswith("^")]) != 2:
            continue
        eq = n.attr["equation"].s.decode()
        a, b = n.input[0], n.input[1]
        plan = einsum_plan(eq, g.shape(a), g.shape(b))
        if plan is None:
            continue
        stem = f"{n.name}/edgekit"
        i32 = 3  # DT_INT32
        for key, side in (("sum_a", "a"), ("sum_b", "b")):
            if plan[key]:
                axes = g.const(f"{stem}_{key}_axes", plan[key], i32, like=n)
                s = g.add("Sum", f"{stem}_{key}", [a if side == "a" else b, axes.name], like=n,
                          attrs={"keep_dims": attr_value_pb2.AttrValue(b=False),
                                 "Tidx": attr_value_pb2.AttrValue(type=i32)})
                a, b = (s.name, b) if side == "a" else (a, s.name)

        a = _reshape(g, n, stem, _transpose(g, n, stem, a, plan["perm_a"], "a"), plan["shape_a"], "a")
        b = _reshape(g, n, stem, _transpose(g, n, stem, b, plan["perm_b"], "b"), plan["shape_b"], "b")
        flags = ("adj_x", "adj_y") if plan["matmul"] == "BatchMatMulV2" else ("transpose_a", "transpose_b")
        mm = g.add(plan["matmul"], f"{stem}_matmul", [a, b], like=n,
                   attrs={f: attr_value_pb2.AttrValue(b=False) for f in flags})
        out = _reshape(g, n, stem, mm.name, plan["shape_out"], "out")
        out_perm = plan["perm_out"]
        if out_perm is None:
            g.replace_node(n, "Identity", [out])
        else:
            c = g.const(f"{stem}_out_perm", out_perm, i32, like=n)
            g.replace_node(n, "Transpose", [out, c.name])
            n.attr["Tperm"].type = i32
        count += 1
    return count


def _batch_of(g: GraphEditor, ref: str, x: str) -> bool:
    """``ref`` computes ``Shape(x)[0]`` (StridedSlice 0:1:1 with shrink_axis_mask 1 of Shape(x))."""
    ss = g.node(g.source(ref))
    if ss is None or ss.op != "StridedSlice" or len(ss.input) < 4:
        return False
    masks = {k: ss.attr[k].i if k in ss.attr else 0
             for k in ("shrink_axis_mask", "ellipsis_mask", "new_axis_mask", "begin_mask", "end_mask")}
    if masks["shrink_axis_mask"] != 1 or masks["ellipsis_mask"] or masks["new_axis_mask"] or masks["end_mask"] & 1:
        return False
    begin, end, strides = (g.const_value(i) for i in ss.input[1:4])
    if any(v is None or v.shape != (1,) for v in (begin, end, strides)):
        return False
    if int(end[0]) != 1 or int(strides[0]) != 1 or (int(begin[0]) != 0 and not masks["begin_mask"] & 1):
        return False
    shape = g.node(g.source(ss.input[0]))
    return shape is not None and shape.op == "Shape" and bool(shape.input) and g.source(shape.input[0]) == g.source(x)


def _reshape_batch(g: GraphEditor) -> int:
    """Reshape(x, Pack(Shape(x)[0], c1, c2, ...)) with constant c's >= 1 -> Reshape(x, [-1, c1, c2, ...]).

    Keras' Reshape layer builds its target shape at run time from the batch of its input
    (Shape -> StridedSlice -> Pack -> Reshape). XNNPACK takes none of those ops, so every such
    Reshape splits the TFLite graph into another delegate partition: EfficientNetB0's 16
    squeeze-and-excitation blocks ran as 17 partitions. With a constant target shape the whole graph
    is one partition. The values are identical: ``x`` has ``batch * c1 * c2 * ...`` elements, so -1
    resolves to the batch (also for an empty batch); the batch stays dynamic."""
    count = 0
    for n in [n for n in g.gd.node if n.op == "Reshape"]:
        pack = g.node(g.source(n.input[1]))
        if pack is None or pack.op != "Pack" or pack.attr["axis"].i != 0 or len(pack.input) < 2:
            continue
        if not _batch_of(g, pack.input[0], n.input[0]):
            continue
        rest = [g.const_value(i) for i in pack.input[1:]]
        if any(v is None or v.ndim != 0 or int(v) < 1 for v in rest):
            continue
        dims = [int(v) for v in rest]
        known = g.shape(n.input[0])
        if known is not None and all(d is not None for d in known[1:]):
            size = 1
            for d in known[1:]:
                size *= int(d)
            prod = 1
            for d in dims:
                prod *= d
            if size != prod:
                continue
        c = g.const(f"{n.name}/edgekit_shape", [-1, *dims], pack.attr["T"].type, like=n)
        n.input[1] = c.name
        count += 1
    return count


@dataclass(frozen=True)
class Rewrite:
    """One named graph rewrite.

    Attributes:
        name: short name shown in the manifest and the report (``erfc->1-erf``).
        ops: the TF ops it removes.
        formats: the formats whose converter or runtime needs it (measured; see each docstring).
        apply: ``apply(GraphEditor) -> number of places rewritten``.
    """

    name: str
    ops: tuple
    formats: tuple
    apply: Callable[[GraphEditor], int]

    @property
    def doc(self) -> str:
        return " ".join((self.apply.__doc__ or "").split())


#: every rewrite, in the order they are applied.
REWRITES: tuple[Rewrite, ...] = (
    Rewrite("argmax-signbit->argmax", ("Bitcast", "BitwiseAnd"), ("tflite", "coreml", "tfjs", "onnx"),
            _argmax_signbit),
    Rewrite("erfc->1-erf", ("Erfc",), ("coreml", "tfjs", "onnx"), _erfc),
    Rewrite("softsign->x/(1+|x|)", ("Softsign",), ("tflite", "tfjs"), _softsign),
    Rewrite("expm1->exp-1", ("Expm1",), ("coreml", "onnx"), _expm1),
    Rewrite("cumsum-axis->positive", ("Cumsum", "Cumprod"), ("tfjs",), _positive_axes),
    Rewrite("einsum->matmul", ("Einsum",), ("tfjs", "coreml"), _einsum),
    Rewrite("reshape-batch->-1", ("Shape", "StridedSlice", "Pack"), ("tflite",), _reshape_batch),
)
BY_NAME = {r.name: r for r in REWRITES}


def for_format(fmt: str) -> tuple[Rewrite, ...]:
    """The rewrites ``fmt`` needs, in application order."""
    return tuple(r for r in REWRITES if fmt in r.formats)


def applicable(graph_def, rewrites: tuple[Rewrite, ...], shapes: dict | None = None) -> list[dict]:
    """Which of ``rewrites`` would change ``graph_def`` (a dry run on a copy): ``[{"name", "count"}]``."""
    _, applied = legalize(copy.deepcopy(graph_def), rewrites, shapes, keep=None)
    return applied


def legalize(graph_def, rewrites: tuple[Rewrite, ...], shapes: dict | None = None,
             keep: list[str] | None = None):
    """Apply ``rewrites`` to ``graph_def`` in place.

    Args:
        graph_def: a frozen, inlined GraphDef.
        rewrites: the rewrites to try, in order (e.g. :func:`for_format`).
        shapes: static shapes by tensor name, for rewrites that need them (default None).
        keep: output node names; when given, nodes no output needs any more are pruned
            (default None: no pruning).

    Returns:
        ``(graph_def, [{"name": rewrite name, "count": places}])`` for the rewrites that applied.
    """
    g = GraphEditor(graph_def, shapes)
    applied = []
    for r in rewrites:
        if not any(n.op in r.ops for n in graph_def.node):
            continue
        count = r.apply(g)
        if count:
            applied.append({"name": r.name, "count": count})
    if keep is not None and applied:
        g.prune(keep)
    return graph_def, applied

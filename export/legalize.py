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


def _fold(g: GraphEditor, ref: str, depth: int = 0):
    """What a shape computation is known to give, element by element: ``("s", v)`` for a scalar,
    ``("v", [v, ...])`` for a vector, each ``v`` an int or None (known only at run time), or None
    when not even the length is known. Folds Const, Shape (the static dims of ``g.shapes``),
    StridedSlice of one element, GatherV2, Prod, Pack and ConcatV2 on axis 0."""
    n = g.node(g.source(ref))
    if n is None or depth > 16:
        return None
    if n.op == "Const":
        v = g.const_value(ref)
        if v is None or v.dtype.kind not in "iu" or v.ndim > 1:
            return None
        return ("s", int(v)) if v.ndim == 0 else ("v", [int(e) for e in v])
    if n.op == "Shape":
        shape = g.shape(n.input[0])
        return None if shape is None else ("v", [None if d is None or d < 0 else int(d) for d in shape])
    if n.op == "StridedSlice" and len(n.input) >= 4:
        if any(n.attr[k].i for k in ("ellipsis_mask", "new_axis_mask", "begin_mask", "end_mask")) \
                or n.attr["shrink_axis_mask"].i != 1:
            return None
        begin, end, strides = (g.const_value(i) for i in n.input[1:4])
        if any(v is None or v.shape != (1,) for v in (begin, end, strides)) or int(strides[0]) != 1 \
                or int(end[0]) != int(begin[0]) + 1 or int(begin[0]) < 0:
            return None
        src = _fold(g, n.input[0], depth + 1)
        i = int(begin[0])
        return ("s", src[1][i] if src and src[0] == "v" and i < len(src[1]) else None)
    if n.op == "GatherV2" and len(n.input) >= 3:
        idx, axis = g.const_value(n.input[1]), g.const_value(n.input[2])
        if idx is None or axis is None or int(axis) != 0 or idx.ndim > 1:
            return None
        src = _fold(g, n.input[0], depth + 1)
        vals = src[1] if src and src[0] == "v" else None
        pick = [vals[int(i)] if vals is not None and 0 <= int(i) < len(vals) else None for i in idx.reshape(-1)]
        return ("s", pick[0]) if idx.ndim == 0 else ("v", pick)
    if n.op == "Prod" and len(n.input) >= 2 and not n.attr["keep_dims"].b:
        axis = g.const_value(n.input[1])
        src = _fold(g, n.input[0], depth + 1)
        if axis is None or axis.size != 1 or int(axis.reshape(-1)[0]) != 0 or not src or src[0] != "v":
            return ("s", None)
        out = 1
        for e in src[1]:
            if e is None:
                return ("s", None)
            out *= e
        return ("s", out)
    if n.op == "Pack" and n.attr["axis"].i == 0:
        parts = [_fold(g, i, depth + 1) for i in n.input if not i.startswith("^")]
        return ("v", [p[1] if p and p[0] == "s" else None for p in parts])
    if n.op == "ConcatV2" and len(n.input) >= 2:
        refs = [i for i in n.input if not i.startswith("^")]
        axis = g.const_value(refs[-1])
        parts = [_fold(g, i, depth + 1) for i in refs[:-1]]
        if axis is None or int(axis) != 0 or any(p is None or p[0] != "v" for p in parts):
            return None
        return ("v", [e for p in parts for e in p[1]])
    return None


def _reshape_batch(g: GraphEditor) -> int:
    """Reshape(x, shape computed at run time) whose target has one entry known only at run time (the
    batch) and constant entries >= 1 otherwise -> Reshape(x, [c1, ..., -1, ...]), a constant.

    Keras builds such targets from its input's shape: the Reshape layer packs ``Shape(x)[0]`` with its
    target dims, Dense on a rank-3 input (Tensordot) reshapes to ``[prod(batch, T), K]`` and back to
    ``Shape(x)[:2] + [units]``. XNNPACK takes none of the shape ops (Shape, StridedSlice, Gather, Prod,
    Pack, Concat), so every such Reshape splits the TFLite graph into another delegate partition:
    EfficientNetB0's 16 squeeze-and-excitation blocks ran as 17 partitions. With constant targets the
    whole graph is one partition. The values are identical wherever the original Reshape is valid:
    the -1 resolves to ``size(x) / product(constants)``, which is the run-time entry (also for an
    empty batch); the batch stays dynamic. Static dims come from the graph's shape inference, re-run
    after a pass that changed something (a constant target fixes the dims the next layer's Shape sees)."""
    total, todo = 0, [n for n in g.gd.node if n.op == "Reshape"]
    while todo:
        count, todo = _reshape_pass(g, todo)
        total += count
        if not count or not todo or not g.shapes:
            break
        from edgekit.export.graph import static_shapes  # export.graph imports this module

        g.shapes = static_shapes(g.gd)
    return total


def _reshape_pass(g: GraphEditor, reshapes: list) -> tuple[int, list]:
    """One pass of :func:`_reshape_batch` over ``reshapes``: (rewritten, the ones left with a run-time target)."""
    count, left = 0, []
    for n in reshapes:
        target = g.node(g.source(n.input[1]))
        if target is None or target.op == "Const":
            continue
        folded = _fold(g, n.input[1])
        if not folded or folded[0] != "v" or not folded[1]:
            left.append(n)
            continue
        dims = folded[1]
        unknown = [i for i, d in enumerate(dims) if d is None]
        if len(unknown) != 1 or any(d is not None and d < 1 for d in dims):
            left.append(n)
            continue
        dtype = target.attr["T"].type if "T" in target.attr else n.attr["Tshape"].type
        c = g.const(f"{n.name}/edgekit_shape", [-1 if d is None else d for d in dims], dtype, like=n)
        n.input[1] = c.name
        count += 1
    return count, left


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
    Rewrite("reshape-batch->-1", ("Shape",), ("tflite",), _reshape_batch),
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

"""The graph each converter gets: the serving signature, re-traced and legalised where needed.

:func:`prepared` returns, for one format, a stand-in for the
:class:`~edgekit.export.source.SourceModel` whose ``function`` is

1. the SavedModel's serving function, or — when that function runs a recurrent layer as a
   ``While`` loop over TensorLists (Keras 3 LSTM/GRU/SimpleRNN: TFLite builtins cannot hold it,
   coremltools' TF frontend crashes on it, TF.js cannot run it) and the Keras model is at hand
   (``model.keras`` beside the SavedModel) — the Keras model re-traced with its fixed sequence
   length and ``unroll=True``: plain MatMul/Sigmoid/Tanh per time step, builtins everywhere;
2. frozen (variables become constants, functions inlined) and passed through the rewrites of
   :mod:`edgekit.export.legalize` that the format needs;
3. checked against the unrewritten SavedModel on probe rows before any converter sees it
   (float outputs within 1e-5 of the output's peak, integer outputs equal). A rewrite that fails
   the check is dropped (and listed under ``rejected``).

What was done is on ``stand_in.legalization`` (recorded by each exporter in the
manifest entry: ``rewrites``, ``graph``). Everything is cached on ``source.cache``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import ConversionError
from edgekit.export import legalize as lg

#: ops that mark a recurrent layer's dynamic loop in a frozen Keras 3 graph.
LOOP_OPS = ("While", "StatelessWhile", "TensorListReserve", "TensorListFromTensor", "TensorListStack")
PROBE_ROWS = 4
#: float outputs of a legalised graph must match the SavedModel to this fraction of their peak.
EXACT_RTOL = 1e-5


def _keep_alive(serve, *objects: Any):
    """A ``tf.Module`` holding the stand-in's ``tf.function`` (as ``serve``) and whatever it needs
    alive (the SavedModel object, the Keras model). TFLite's converter saves this module with the
    function as its ``serving_default`` signature: that is how the .tflite file gets a signature."""
    import tensorflow as tf

    module = tf.Module()
    module.serve = serve
    module._edgekit_keep = list(objects)  # plain attribute: not tracked, only kept alive
    return module


def keras_path(source) -> Path | None:
    """The ``.keras`` file of the same model, if there is one.

    ``source.keras_path`` when the source knows it; else ``<example>/model.keras`` or a
    ``model.keras`` next to the SavedModel directory (``dir/saved_model`` + ``dir/model.keras``).
    """
    known = getattr(source, "keras_path", None)
    if known:
        return Path(known) if Path(known).is_file() else None
    sm = Path(source.saved_model_dir)
    cands = []
    if getattr(source, "example_dir", None):
        cands.append(Path(source.example_dir) / "model.keras")
    cands += [sm.parent / "model.keras", sm.with_suffix(".keras")]
    return next((c for c in cands if c.is_file()), None)


def freeze(fn):
    """``(frozen concrete function, GraphDef)``: variables as constants, functions inlined, control
    flow kept as ``While`` (its bodies stay in the GraphDef's function library)."""
    from tensorflow.python.framework import convert_to_constants as c2c

    frozen = c2c.convert_variables_to_constants_v2(fn, lower_control_flow=False, aggressive_inlining=True)
    return frozen, frozen.graph.as_graph_def()


def graph_ops(graph_def) -> set[str]:
    """Every op type in the graph and in its function library."""
    ops = {n.op for n in graph_def.node}
    for f in graph_def.library.function:
        ops |= {n.op for n in f.node_def}
    return ops


def static_shapes(graph_def) -> dict:
    """``{tensor name: [dim or None, ...]}`` for every op output (shapes TF infers on import)."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    shapes = {}
    for op in g.get_operations():
        for t in op.outputs:
            if t.shape.rank is not None:
                shapes[t.name] = t.shape.as_list()
    return shapes


def _rnn_layers(model) -> list:
    import keras

    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.RNN):
            found.append(layer)
        for attr in ("forward_layer", "backward_layer", "layer"):
            sub = getattr(layer, attr, None)
            if isinstance(sub, keras.layers.Layer):
                stack.append(sub)
        stack.extend(getattr(layer, "layers", []) or [])
    return found


def retrace_unrolled(source, path: Path):
    """Re-trace the Keras model at ``path`` with every recurrent layer unrolled.

    Returns:
        ``(concrete function, keras model, note)``; the function takes the signature's inputs
        (batch dynamic, every other dimension fixed) and returns ``{output name: tensor}``.

    Raises:
        ConversionError: the model cannot be loaded safely, or its inputs/outputs do not map
            onto the serving signature's.
    """
    import keras
    import tensorflow as tf

    try:
        model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - any load failure means: no re-trace
        raise ConversionError("cannot load the Keras model for the unrolled re-trace",
                              got=f"{path}: {type(exc).__name__}: {exc}"[:300]) from exc
    rnns = _rnn_layers(model)
    for layer in rnns:
        layer.unroll = True
    names = source.input_names
    by_name = {i["name"]: i for i in source.inputs}
    model_in = [t.name for t in model.inputs]
    if len(names) > 1 and sorted(model_in) != sorted(names):
        raise ConversionError("Keras model inputs do not match the serving signature",
                              got=model_in, expected=names)
    specs = [tf.TensorSpec([None, *by_name[n]["shape"][1:]], by_name[n]["dtype"], name=n) for n in names]

    def call(*args):
        feeds = dict(zip(names, args, strict=True))
        x = [feeds[n] for n in model_in] if len(names) > 1 else args[0]
        y = model(x, training=False)
        if isinstance(y, dict):
            out = dict(y)
        elif isinstance(y, (list, tuple)):
            out = {f"output_{i}": t for i, t in enumerate(y)}
        else:
            out = {"output_0": y}
        if sorted(out) != sorted(source.output_names):
            raise ConversionError("Keras model outputs do not match the serving signature",
                                  got=sorted(out), expected=source.output_names)
        return out

    fn = tf.function(call, input_signature=specs).get_concrete_function()
    steps = sorted({int(by_name[n]["shape"][1]) for n in names if len(by_name[n]["shape"]) > 2})
    note = (f"keras re-trace, {len(rnns)} recurrent layer(s) unrolled"
            + (f" over {', '.join(map(str, steps))} steps" if steps else ""))
    return fn, model, note


def _base(source) -> dict:
    """The frozen graph all formats start from (cached)."""
    key = "edgekit.graph.base"
    if key in source.cache:
        return source.cache[key]
    frozen, gd = freeze(source.function)
    note, keep, fn = "serving signature", (), source.function
    loops = sorted(graph_ops(gd) & set(LOOP_OPS))
    kpath = keras_path(source) if loops else None
    retrace_error = None
    if kpath is not None:
        try:
            fn, model, note = retrace_unrolled(source, kpath)
            frozen, gd = freeze(fn)
            keep = (model,)
            loops = sorted(graph_ops(gd) & set(LOOP_OPS))
        except ConversionError as exc:
            retrace_error = str(exc)
    out_refs = dict(zip(source.output_names, [t.name for t in frozen.outputs], strict=True))
    in_refs = dict(zip(source.input_names, [t.name for t in frozen.inputs], strict=True))
    base = {"graph_def": gd, "inputs": in_refs, "outputs": out_refs, "note": note,
            "retraced": fn is not source.function, "keep": keep, "loops": loops,
            "keras_path": str(kpath) if kpath else None, "retrace_error": retrace_error, "shapes": None}
    source.cache[key] = base
    return base


def probe_inputs(source, options=None, rows: int = PROBE_ROWS) -> dict:
    """A few input rows keyed by input name: the calibration data's first ``rows`` rows if any,
    else seeded values (normal floats; integers 0 or 1, valid ids for any Embedding)."""
    rng = np.random.default_rng(0)
    calib = getattr(options, "calibration", None) or {}
    feeds = {}
    for info in source.inputs:
        shape = [rows] + [int(d) for d in info["shape"][1:]]
        dtype = np.dtype(info.get("dtype", "float32"))
        if info["name"] in calib and len(calib[info["name"]]):
            feeds[info["name"]] = np.asarray(calib[info["name"]][:rows]).astype(dtype)
        elif dtype.kind in "iu":
            feeds[info["name"]] = rng.integers(0, 2, shape).astype(dtype)
        else:
            feeds[info["name"]] = rng.normal(0, 1, shape).astype(dtype)
    return feeds


def _run(fn, names: list[str], feeds: dict, kwargs: bool) -> dict:
    import tensorflow as tf

    args = {n: tf.constant(feeds[n]) for n in names}
    out = fn(**args) if kwargs else fn(*[args[n] for n in names])
    return {k: v.numpy() for k, v in out.items()}


def max_difference(got: dict, want: dict) -> float:
    """Largest |got - want| relative to max(1, peak |want|) over the outputs (inf on a shape,
    dtype-kind or integer mismatch)."""
    worst = 0.0
    for k, w in want.items():
        g = got.get(k)
        if g is None or g.shape != w.shape:
            return float("inf")
        if w.dtype.kind in "iub":
            if not np.array_equal(g, w):
                return float("inf")
            continue
        scale = max(1.0, float(np.nanmax(np.abs(w))) if w.size else 1.0)
        worst = max(worst, float(np.nanmax(np.abs(g.astype(np.float64) - w))) / scale if w.size else 0.0)
    return worst


def _wrap(gd, in_refs: dict, out_refs: dict):
    """A concrete function over a GraphDef, shaped like a serving signature: inputs named after the
    signature's (positional, in its order), outputs a dict by name. Converters that build a
    signature from the function (TFLite) need the named input specs a bare pruned graph lacks."""
    import tensorflow as tf

    def imports():
        tf.compat.v1.import_graph_def(gd, name="")

    wrapped = tf.compat.v1.wrap_function(imports, [])
    g = wrapped.graph
    feeds = [g.as_graph_element(in_refs[n]) for n in in_refs]
    fetches = {n: g.as_graph_element(ref) for n, ref in out_refs.items()}
    pruned = wrapped.prune(feeds, fetches)
    specs = [tf.TensorSpec(t.shape, t.dtype, name=n) for n, t in zip(in_refs, feeds, strict=True)]
    serve = tf.function(lambda *args: pruned(*args), input_signature=specs)
    return (serve, wrapped, pruned), serve.get_concrete_function()


def _named_outputs(gd, out_refs: dict) -> dict:
    """Add ``Identity`` nodes named after the outputs (``output_0``...) so every converter names
    its outputs like the signature; returns output name -> tensor name."""
    g = lg.GraphEditor(gd)
    refs = {}
    for name, ref in out_refs.items():
        src = g.node(ref)
        node = g.add("Identity", name, [ref[:-2] if ref.endswith(":0") else ref])
        node.attr["T"].type = _dtype_enum(src, ref)
        refs[name] = f"{node.name}:0"
    return refs


def _dtype_enum(node, ref: str) -> int:
    for key in ("T", "dtype", "out_type", "output_type"):
        if key in node.attr and node.attr[key].type:
            return node.attr[key].type
    raise ConversionError("cannot tell the dtype of an output node", got=f"{ref} ({node.op})")


def _build(source, base: dict, rewrites: tuple, feeds: dict, want: dict):
    gd = copy.deepcopy(base["graph_def"])
    if base["shapes"] is None and any(r.name in ("einsum->matmul", "cumsum-axis->positive", "reshape-batch->-1")
                                      for r in rewrites):
        base["shapes"] = static_shapes(base["graph_def"])
    keep = [ref.split(":")[0] for ref in base["outputs"].values()]
    gd, applied = lg.legalize(gd, rewrites, base["shapes"], keep=keep)
    out_refs = _named_outputs(gd, base["outputs"])
    wrapped, fn = _wrap(gd, base["inputs"], out_refs)
    got = _run(fn, list(base["inputs"]), feeds, kwargs=False)
    return {"fn": fn, "wrapped": wrapped, "applied": applied, "out_refs": out_refs,
            "diff": max_difference(got, want)}


def prepared(source, fmt: str, options=None):
    """The source as ``fmt``'s converter should see it (see the module docstring).

    Args:
        source: the loaded :class:`~edgekit.export.source.SourceModel`.
        fmt: format name (selects :func:`edgekit.export.legalize.for_format`).
        options: the run's :class:`~edgekit.export.base.ExportOptions` (default None; its
            calibration rows, when present, are the probe inputs).

    Returns:
        A shallow copy of ``source`` whose ``function`` is the frozen (and, where needed,
        re-traced and rewritten) graph, with ``input_tensors``, ``output_tensors``, ``loaded``
        and ``cache`` replaced and ``legalization`` saying what was done. Every converter gets a
        frozen graph: freezing once per run instead of once per variant (and TFLite's converter
        not saving a temporary SavedModel per variant) made EfficientNetB0's TFLite variants ~6x
        faster here (46 s -> 8 s each on a loaded 2-core machine).

    Raises:
        ConversionError: the re-traced graph does not match the SavedModel.
    """
    rewrites = lg.for_format(fmt)
    base = _base(source)
    key = ("edgekit.graph", tuple(r.name for r in rewrites))
    if key in source.cache:
        return source.cache[key]
    if "probe" not in base:
        feeds = probe_inputs(source, options)
        base["probe"] = (feeds, _run(source.function, source.input_names, feeds, kwargs=True))
    feeds, want = base["probe"]
    info = {"graph": base["note"], "rewrites": [], "rejected": []}
    if base["retrace_error"]:
        info["retrace_error"] = base["retrace_error"]
    built = _build(source, base, rewrites, feeds, want)
    if built["diff"] > EXACT_RTOL:
        if not built["applied"]:
            what = "the unrolled re-trace" if base["retraced"] else "the frozen serving graph"
            raise ConversionError(f"{what} does not match the SavedModel",
                                  got=f"max |diff| {built['diff']:.3g} of the output peak",
                                  expected=f"<= {EXACT_RTOL:g}")
        good = []
        for r in (r for r in rewrites if any(a["name"] == r.name for a in built["applied"])):
            alone = _build(source, base, (r,), feeds, want)  # keep the rewrites exact on their own
            if alone["diff"] <= EXACT_RTOL:
                good.append(r)
            else:
                info["rejected"].append({"name": r.name, "max_rel_diff": alone["diff"]})
        built = _build(source, base, tuple(good), feeds, want)
        if built["diff"] > EXACT_RTOL:
            raise ConversionError("the legalised graph does not match the SavedModel",
                                  got=f"max |diff| {built['diff']:.3g}", expected=f"<= {EXACT_RTOL:g}")
    info["rewrites"] = built["applied"]
    info["max_rel_diff"] = built["diff"]
    stand_in = copy.copy(source)
    stand_in.function = built["fn"]
    serve, *rest = built["wrapped"]
    stand_in.loaded = _keep_alive(serve, source.loaded, *rest, *base["keep"])
    stand_in.input_tensors = {n: t.name for n, t in zip(source.input_names, built["fn"].inputs)}
    stand_in.output_tensors = dict(zip(source.output_names, [t.name for t in built["fn"].outputs], strict=True))
    stand_in.cache = {}
    stand_in.legalization = info
    source.cache[key] = stand_in
    return stand_in


def describe(info: dict) -> str:
    """``"rewrites: erfc->1-erf"`` / ``"graph: keras re-trace, ..."`` for messages (empty if none)."""
    parts = []
    if info.get("rewrites"):
        parts.append("rewrites: " + ", ".join(r["name"] for r in info["rewrites"]))
    if info.get("graph") and info["graph"] != "serving signature":
        parts.append(f"graph: {info['graph']}")
    return "; ".join(parts)


def manifest_extra(info: dict) -> dict:
    """The manifest keys an exporter adds for the graph it converted."""
    extra: dict = {"rewrites": [r["name"] for r in info.get("rewrites", [])],
                   "graph": info.get("graph", "serving signature")}
    if info.get("rejected"):
        extra["rewrites_rejected"] = info["rejected"]
    if info.get("retrace_error"):
        extra["retrace_error"] = info["retrace_error"]
    return extra

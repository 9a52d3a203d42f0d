"""TensorFlow.js export: graph model (model.json + weight shards), fp32, float16 or uint8 weights.

Uses the ``tensorflowjs`` converter's Python API in-process on the already-loaded
SavedModel (the Keras layers-model path is broken with Keras 3). The expensive part —
freezing the signature and the Grappler passes — runs once per export run; the three
variants only differ in how weights are written, so they reuse it. This follows
``tensorflowjs.converters.tf_saved_model_conversion_v2._convert_tf_saved_model``
(tensorflowjs 4.22.0, its last release, pinned) step by step, with two changes: the
signature is built from the concrete function (names exactly the signature's), and output
nodes are renamed to the signature's output names, so ``model.outputs`` reads
``output_0``... in any TF.js version. Metadata goes in ``userDefinedMetadata.edgekit``.

Run in a browser or Node::

    const model = await tf.loadGraphModel("tfjs/fp32/model.json");
    const y = model.execute({features: tf.tensor2d(rows)}, "output_0");
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgekit.core.formats import SPECS
from edgekit.export.base import Exporter, ExportOptions, Precision, Produced, tensor_info
from edgekit.export.registry import register

_QUANT = {Precision.FP32: None, Precision.FP16: {"float16": True}, Precision.UINT8: {"uint8": True}}


def _rename_nodes(graph_def, renames: dict) -> None:
    """Rename nodes (and every reference to them) in a GraphDef, in place."""
    existing = {n.name for n in graph_def.node}
    for old, new in renames.items():
        if old not in existing:
            raise ValueError(f"output node {old!r} not found in the optimized graph")
        if new in existing and new != old:
            raise ValueError(f"cannot name output {new!r}: a graph node already has that name")
    for node in graph_def.node:
        if node.name in renames:
            node.name = renames[node.name]
        for i, ref in enumerate(node.input):
            ctrl = ref.startswith("^")
            base, _, port = ref.lstrip("^").partition(":")
            if base in renames:
                node.input[i] = ("^" if ctrl else "") + renames[base] + (f":{port}" if port else "")


# Activations TF.js 4.22's cpu and wasm backends can run fused into MatMul/Conv2D/DepthwiseConv2D
# (tfjs-backend-cpu applyActivation, tfjs-backend-wasm FusableActivation: linear, relu, relu6,
# prelu, leakyrelu, elu, sigmoid). Grappler's remapper also fuses Tanh, hard-swish
# (``_FusedHardSwish``), GELU (``GeluExact``/``GeluApproximate``) and swish (``_MklSwish``):
# TF.js then fails at run time ("Activation tanh has not been implemented for the CPU backend",
# "Unknown op _FusedHardSwish"). Those are split back out of the fused op, each into the plain
# ops of its definition, all in TF.js' op list.
_TFJS_FUSABLE = {"Relu", "Relu6", "Elu", "Sigmoid", "LeakyRelu", "Prelu"}
_FUSED_OPS = {"_FusedMatMul", "_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedDepthwiseConv2dNative"}
_CONTRACTION_PARTS = ("BiasAdd", "FusedBatchNorm", "Add", "AddV2")


def _expand_activation(g, act: str, x: str, name: str, like) -> None:
    """Add nodes computing activation ``act`` of tensor ``x``; the last one is named ``name``."""
    import math

    dt = like.attr["T"].type

    def c(tag, v):
        return g.const(f"{name}/edgekit_{tag}", v, dt, like=like).name

    def op(kind, tag, *ins, final=False):
        n = g.add(kind, name if final else f"{name}/edgekit_{tag}", list(ins), like=like)
        return n.name

    if act in ("Tanh", "Sigmoid", "Relu", "Relu6", "Elu", "Selu", "Softplus"):
        op(act, "act", x, final=True)
    elif act == "_FusedHardSwish":  # x * relu6(x + 3) / 6
        r = op("Relu6", "relu6", op("AddV2", "plus3", x, c("three", 3.0)))
        op("Mul", "div6", op("Mul", "mul", x, r), c("sixth", 1.0 / 6.0), final=True)
    elif act in ("_MklSwish", "Swish"):  # x * sigmoid(x)
        op("Mul", "mul", x, op("Sigmoid", "sigmoid", x), final=True)
    elif act == "GeluExact":  # 0.5 x (1 + erf(x / sqrt 2))
        e = op("Erf", "erf", op("Mul", "scaled", x, c("rsqrt2", 1.0 / math.sqrt(2.0))))
        h = op("Mul", "half", x, c("half_c", 0.5))
        op("Mul", "gelu", h, op("AddV2", "onep", e, c("one", 1.0)), final=True)
    elif act == "GeluApproximate":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = op("Mul", "cube", x, op("Mul", "sq", x, x))
        inner = op("AddV2", "inner", x, op("Mul", "k", cube, c("k_c", 0.044715)))
        t = op("Tanh", "tanh", op("Mul", "s", inner, c("s_c", math.sqrt(2.0 / math.pi))))
        h = op("Mul", "half", x, c("half_c", 0.5))
        op("Mul", "gelu", h, op("AddV2", "onep", t, c("one", 1.0)), final=True)
    else:
        raise ValueError(f"TF.js cannot run activation {act!r} fused into a convolution or matmul, and "
                         "edgekit has no split for it")


def _unfuse_activations(graph_def) -> list[str]:
    """Split activations TF.js cannot run fused (Tanh, hard-swish, GELU, ...) out of fused ops into
    plain nodes; returns the activations split, one entry per node."""
    from edgekit.export.graphedit import GraphEditor

    g = GraphEditor(graph_def)
    split = []
    for node in list(graph_def.node):
        if node.op not in _FUSED_OPS or "fused_ops" not in node.attr:
            continue
        ops = [s.decode() for s in node.attr["fused_ops"].list.s]
        if not ops or ops[-1] in _TFJS_FUSABLE or ops[-1] in _CONTRACTION_PARTS:
            continue
        act = ops[-1]
        del node.attr["fused_ops"].list.s[-1]
        name = node.name
        del g.nodes[name]
        node.name = g.unique(f"{name}/edgekit_unfused")
        g.nodes[node.name] = node
        _expand_activation(g, act, node.name, name, node)
        split.append(act)
    return split


def _flatten_biases(graph_def) -> int:
    """Give every fused op a rank-1 bias: TF.js' wasm backend rejects the (1, 1, C) / (1, 1, 1, C)
    constants that grappler folds into fused ops (EfficientNet's squeeze-excite, Keras RNN cells);
    the values are the same C numbers. Returns how many constants were reshaped."""
    import numpy as np
    from tensorflow.python.framework import tensor_util

    from edgekit.export.graphedit import GraphEditor

    g = GraphEditor(graph_def)
    done = 0
    for node in graph_def.node:
        if node.op not in _FUSED_OPS or "fused_ops" not in node.attr or len(node.input) < 3:
            continue
        ops = [s.decode() for s in node.attr["fused_ops"].list.s]
        if not ops or ops[0] != "BiasAdd":
            continue
        const = g.node(g.source(node.input[2]))
        if const is None or const.op != "Const":
            continue
        value = tensor_util.MakeNdarray(const.attr["value"].tensor)
        if value.ndim > 1 and value.size == value.shape[-1]:
            flat = value.reshape(-1)
        elif value.ndim == 0:  # a scalar folded into the bias (x @ W + 3 of hard_sigmoid): one per channel
            channels = _out_channels(g, node)
            if channels is None:
                continue
            flat = np.full(channels, value, dtype=value.dtype)
        else:
            continue
        if sum(1 for n in graph_def.node for i in n.input if g.source(i) == const.name) > 1:
            const = g.const(f"{node.name}/edgekit_bias", flat, const.attr["dtype"].type, like=node)
            node.input[2] = const.name
        else:
            const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(flat))
        done += 1
    return done


_PLAIN = {"_FusedMatMul": ("MatMul", ("transpose_a", "transpose_b")),
          "_FusedConv2D": ("Conv2D", ("strides", "padding", "explicit_paddings", "data_format", "dilations",
                                      "use_cudnn_on_gpu")),
          "FusedDepthwiseConv2dNative": ("DepthwiseConv2dNative", ("strides", "padding", "explicit_paddings",
                                                                   "data_format", "dilations"))}


def _unfuse_tensor_biases(graph_def) -> int:
    """Turn fused ops whose "bias" is a computed tensor back into the plain op + AddV2 (+ the
    activation). TF.js' converter folds ``MatMul(x, W) + MatMul(h, U)`` (every recurrent cell)
    into a fused MatMul with the second product as its bias, which the wasm backend rejects
    ("only supports rank-1 bias"). Returns how many fused ops were split."""
    from edgekit.export.graphedit import GraphEditor

    g = GraphEditor(graph_def)
    done = 0
    for node in list(graph_def.node):
        if node.op not in _PLAIN or "fused_ops" not in node.attr or len(node.input) < 3:
            continue
        ops = [s.decode() for s in node.attr["fused_ops"].list.s]
        if not ops or ops[0] != "BiasAdd":
            continue
        bias = g.node(g.source(node.input[2]))
        if bias is not None and bias.op == "Const":
            continue
        plain, keep = _PLAIN[node.op]
        alpha = node.attr["leakyrelu_alpha"].f if "leakyrelu_alpha" in node.attr else 0.2
        name = node.name
        del g.nodes[name]
        node.name = g.unique(f"{name}/edgekit_plain")
        g.nodes[node.name] = node
        bias_ref = node.input[2]
        extra = [i for i in node.input[3:] if not i.startswith("^")]
        controls = [i for i in node.input if i.startswith("^")]
        node.op = plain
        for key in [k for k in node.attr if k not in keep and k != "T"]:
            del node.attr[key]
        del node.input[2:]
        node.input.extend(controls)
        acts = ops[1:]
        if not acts:
            g.add("AddV2", name, [node.name, bias_ref], like=node)
        else:
            added = g.add("AddV2", f"{name}/edgekit_bias", [node.name, bias_ref], like=node)
            if acts[0] == "Prelu" and extra:
                g.add("Prelu", name, [added.name, extra[0]], like=node)
            elif acts[0] == "LeakyRelu":
                from tensorflow.core.framework import attr_value_pb2

                g.add("LeakyRelu", name, [added.name], like=node, attrs={"alpha": attr_value_pb2.AttrValue(f=alpha)})
            else:
                _expand_activation(g, acts[0], added.name, name, node)
        done += 1
    return done


def _out_channels(g, node) -> int | None:
    """Output channels of a fused MatMul/Conv2D/DepthwiseConv2D from its constant filter."""
    from tensorflow.python.framework import tensor_util

    filt = g.node(g.source(node.input[1]))
    if filt is None or filt.op != "Const":
        return None
    shape = tensor_util.MakeNdarray(filt.attr["value"].tensor).shape
    if node.op == "_FusedMatMul":
        return int(shape[0] if node.attr["transpose_b"].b else shape[1])
    if "Depthwise" in node.op:
        return int(shape[2] * shape[3])
    return int(shape[-1])


def _prepare(source, original=None) -> dict:
    """Freeze + optimize the signature once per run (cached on ``source.cache``).

    ``original`` is the loaded SavedModel's source when ``source`` is a legalised stand-in (a
    frozen graph has no resources to initialise); default None: ``source`` is the SavedModel's own."""
    if "tfjs" in source.cache:
        return source.cache["tfjs"]
    import tensorflow as tf
    from google.protobuf.json_format import MessageToDict
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tsc

    fn = source.function
    frozen = tsc._freeze_saved_model_v2(fn, control_flow_v2=False)
    init_fn = tsc._get_resource_initializer_concrete_function(source.loaded) if original is None else None
    init_graph = resource_maps = None
    if init_fn is not None:
        init_graph = tsc._freeze_saved_model_v2(init_fn, control_flow_v2=False)
        resource_maps = tsc._get_resource_ids_maps(source.loaded, fn, init_fn)

    def add(entry, tensor):
        entry.name = tensor.name
        entry.dtype = tensor.dtype.as_datatype_enum
        entry.tensor_shape.CopyFrom(tensor.shape.as_proto())

    by_name = {t.name: t for t in fn.inputs} | {t.name: t for t in fn.outputs}
    signature = meta_graph_pb2.SignatureDef()
    for n in source.input_names:
        add(signature.inputs[n], by_name[source.input_tensors[n]])
    for n in source.output_names:
        add(signature.outputs[n], by_name[source.output_tensors[n]])
    optimized = tsc.optimize_graph(frozen, signature)
    unfused = _unfuse_activations(optimized)
    flat_biases = _flatten_biases(optimized) + _unfuse_tensor_biases(optimized)

    renames = {}
    for n in source.output_names:
        node, _, port = source.output_tensors[n].partition(":")
        if port not in ("", "0"):
            raise ValueError(f"output {n} is port {port} of node {node}; cannot name it")
        renames[node] = n
    _rename_nodes(optimized, {k: v for k, v in renames.items() if k != v})
    for n in source.output_names:
        signature.outputs[n].name = f"{n}:0"

    init_def = init_graph.as_graph_def() if init_graph is not None else None
    init_sig = None
    if init_graph is not None and hasattr(init_graph, "outputs"):
        init_sig = tsc._build_signature_def(init_graph, [], init_graph.outputs)
    weights = tsc.extract_weights(optimized, init_def)  # clears tensor data from `optimized`
    # protobuf map fields (node attrs) come out of MessageToDict in no fixed order: sort every
    # dict so the same SavedModel always gives the same model.json bytes
    prepared = {"topology": _sorted_dicts(MessageToDict(optimized)), "weights": weights, "signature": signature,
                "tf_version": getattr(source.loaded, "tensorflow_version", None) or tf.__version__,
                "init_def": init_def, "init_sig": init_sig, "resource_maps": resource_maps,
                "unfused_activations": unfused, "flattened_biases": flat_biases}
    source.cache["tfjs"] = prepared
    return prepared


def _sorted_dicts(obj):
    """``obj`` with every dict's keys sorted, recursively (list order is kept)."""
    if isinstance(obj, dict):
        return {k: _sorted_dicts(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_sorted_dicts(v) for v in obj]
    return obj


@register
class TFJSExporter(Exporter):
    """Graph models under ``tfjs/<precision>/model.json`` (+ ``group1-shard*.bin``)."""

    name = "tfjs"
    precisions = SPECS["tfjs"].precisions
    converter = "tensorflowjs"

    def relpath(self, precision: Precision) -> str:
        return f"tfjs/{Precision(precision).value}"

    def export(self, source, precision, out_dir: Path, options: ExportOptions) -> Produced:
        from edgekit.core.errors import require

        # tensorflow_decision_forests (imported by tensorflowjs) imports IPython to greet the
        # user whenever sys.stdout is not the real terminal (pytest, redirected output).
        os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
        require("tensorflowjs", "export")
        from tensorflowjs.converters import tf_saved_model_conversion_v2 as tsc

        from edgekit.export import graph

        precision = Precision(precision)
        src = graph.prepared(source, self.name, options)
        prep = _prepare(src, None if src.function is source.function else source)
        meta = {**options.metadata, "format": self.name, "precision": precision.value}
        path = out_dir / self.relpath(precision)
        path.mkdir(parents=True, exist_ok=True)
        tsc.write_artifacts(prep["topology"], prep["weights"], str(path / "model.json"), prep["tf_version"],
                            prep["signature"], quantization_dtype_map=_QUANT[precision],
                            initializer_graph_def=prep["init_def"],
                            initializer_signature_def=prep["init_sig"],
                            resource_ids_maps=prep["resource_maps"], metadata={"edgekit": meta})
        model_json = json.loads((path / "model.json").read_text())
        sig = model_json.get("signature", {})
        missing = (set(source.input_names) - set(sig.get("inputs", {}))) | \
                  (set(source.output_names) - set(sig.get("outputs", {})))
        if missing:
            raise ValueError(f"model.json signature lacks {sorted(missing)}")
        for group in model_json["weightsManifest"]:
            for shard in group["paths"]:
                if not (path / shard).is_file():
                    raise ValueError(f"weight shard {shard} was not written")
        quant = None if precision == Precision.FP32 else \
            {"weights": "float16" if precision == Precision.FP16 else "uint8 (affine, per tensor)",
             "activations": "float32"}
        inputs = [tensor_info(i["name"], i["shape"], i.get("dtype", "float32")) for i in source.inputs]
        outputs = [tensor_info(o["name"], o["shape"], o["dtype"]) for o in source.outputs]
        extra = {"entry": "model.json", "model_format": "graph-model",
                 "unfused_activations": prep["unfused_activations"], **graph.manifest_extra(src.legalization)}
        if prep["flattened_biases"]:
            extra["flattened_biases"] = prep["flattened_biases"]
        extra.update(run_once(path, graph.probe_inputs(source, options, rows=2)))
        return Produced(path=path, inputs=inputs, outputs=outputs, quantization=quant,
                        embedded_metadata=meta, extra=extra)


def run_once(path: Path, feeds: dict) -> dict:
    """Load and run the graph model once on each Node backend edgekit verifies (cpu, wasm).

    Returns:
        ``{"ran_in": [runtimes that ran it]}`` plus ``{"backend_failures": {backend: message}}`` for
        the backends that could not; ``{"ran_in": [], "not_run": why}`` when Node.js or the npm
        packages are missing.

    Raises:
        RuntimeFailure: no backend could run the model (the message names each backend and why,
            e.g. the op it lacks).
    """
    from edgekit.core.errors import DependencyError, RuntimeFailure
    from edgekit.runtime.tfjs import BACKENDS, TfjsRunner

    ran, failed = [], {}
    for backend in BACKENDS:
        try:
            with TfjsRunner(path, backend=backend) as runner:
                runner.predict({n: feeds[n] for n in (i.name for i in runner.inputs)})
                ran.append(runner.runtime_name)
        except DependencyError as exc:
            return {"ran_in": [], "not_run": str(exc)}
        except RuntimeFailure as exc:
            failed[backend] = str(exc)
    if not ran:
        raise RuntimeFailure("the TF.js model does not run on any Node backend",
                             got="; ".join(f"{b}: {m}" for b, m in failed.items()))
    return {"ran_in": ran, **({"backend_failures": failed} if failed else {})}

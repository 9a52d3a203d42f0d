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


# Activations TF.js's cpu and wasm backends can run fused into MatMul/Conv2D (tfjs 4.22:
# backend-cpu applyActivation, backend-wasm FusableActivation). Grappler's remapper also
# fuses Tanh, which then fails in Node and the browser with "Activation tanh has not been
# implemented for the CPU backend"; such activations are split back out into their own node.
_TFJS_FUSABLE = {"Relu", "Relu6", "Elu", "Sigmoid", "LeakyRelu", "Prelu"}
_FUSED_OPS = {"_FusedMatMul", "_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedDepthwiseConv2dNative"}


def _unfuse_activations(graph_def) -> int:
    """Split activations TF.js cannot run fused (e.g. Tanh) into separate nodes; returns how many."""
    from tensorflow.core.framework import node_def_pb2

    added = []
    for node in graph_def.node:
        if node.op not in _FUSED_OPS or "fused_ops" not in node.attr:
            continue
        ops = [s.decode() for s in node.attr["fused_ops"].list.s]
        if not ops or ops[-1] in _TFJS_FUSABLE or ops[-1] in ("BiasAdd", "FusedBatchNorm", "Add"):
            continue
        act = ops[-1]
        del node.attr["fused_ops"].list.s[-1]
        name = node.name
        node.name = f"{name}/edgekit_unfused"
        new = node_def_pb2.NodeDef(name=name, op=act, input=[node.name], device=node.device)
        new.attr["T"].CopyFrom(node.attr["T"])
        added.append(new)
    graph_def.node.extend(added)
    return len(added)


def _prepare(source) -> dict:
    """Freeze + optimize the signature once per run (cached on ``source.cache``)."""
    if "tfjs" in source.cache:
        return source.cache["tfjs"]
    import tensorflow as tf
    from google.protobuf.json_format import MessageToDict
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tsc

    fn = source.function
    frozen = tsc._freeze_saved_model_v2(fn, control_flow_v2=False)
    init_fn = tsc._get_resource_initializer_concrete_function(source.loaded)
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
                "unfused_activations": unfused}
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

        precision = Precision(precision)
        prep = _prepare(source)
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
        inputs = [tensor_info(i["name"], i["shape"], "float32") for i in source.inputs]
        outputs = [tensor_info(o["name"], o["shape"], o["dtype"]) for o in source.outputs]
        return Produced(path=path, inputs=inputs, outputs=outputs, quantization=quant,
                        embedded_metadata=meta, extra={"entry": "model.json", "model_format": "graph-model",
                               "unfused_activations": prep["unfused_activations"]})

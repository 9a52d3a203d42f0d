"""ONNX export: fp32 via tf2onnx (opset selectable, default 17) and an int8 variant made
with onnxruntime's dynamic quantization.

tf2onnx converts the SavedModel's serving signature in-process (``from_function`` on the
loaded concrete function; ``from_keras`` is broken with Keras 3). The batch dimension is
symbolic (``batch``); outputs are renamed to the signature's names; metadata goes in
``metadata_props``. tf2onnx keeps going past an op it cannot convert, so every produced
model is checked with ``onnx.checker`` and loaded in onnxruntime before it counts.

Run anywhere onnxruntime runs::

    import onnxruntime as ort
    s = ort.InferenceSession("onnx/model_fp32.onnx", providers=["CPUExecutionProvider"])
    print(s.run(None, {"features": x.astype("float32")}))
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgekit.core.formats import SPECS
from edgekit.export.base import Exporter, ExportOptions, Precision, Produced, tensor_info
from edgekit.export.registry import register

_ORT_DTYPES = {"float": "float32", "double": "float64", "float16": "float16"}  # onnxruntime type names -> numpy names


def _rename_value(graph, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for coll in (graph.input, graph.output, graph.value_info):
        for v in coll:
            if v.name == old:
                v.name = new


def _fp32_model(source, opset: int):
    """Convert once per (run, opset); cached on ``source.cache``."""
    key = ("onnx", opset)
    if key in source.cache:
        return source.cache[key]
    from edgekit.core.errors import require

    for noisy in ("tf2onnx", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    tf2onnx = require("tf2onnx", "export")
    onnx = require("onnx", "export")

    class _Signature:  # from_function wants something with get_concrete_function()
        def get_concrete_function(self, *_):
            return source.function

    model, _ = tf2onnx.convert.from_function(_Signature(), input_signature=[], opset=opset)
    graph = model.graph
    # tf2onnx writes the traced function's name, whose numeric suffix is a per-process counter:
    # a stable text keeps two exports of one SavedModel byte-identical
    graph.doc_string = f"converted by tf2onnx from the {source.signature_key} signature"
    _captured_to_initializers(graph, source)
    names_in = [i.name for i in graph.input]
    for n in source.input_names:  # tf2onnx names inputs after the signature already
        if n not in names_in:
            tensor = source.input_tensors[n]
            if tensor not in names_in:
                raise ValueError(f"ONNX graph inputs {names_in} do not include {n!r}")
            _rename_value(graph, tensor, n)
    for n in source.output_names:
        tensor = source.output_tensors[n]
        if n not in [o.name for o in graph.output]:
            _rename_value(graph, tensor, n)
    for v in list(graph.input) + list(graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_param = "batch"
    onnx.checker.check_model(model)
    source.cache[key] = model
    return model


def _captured_to_initializers(graph, source) -> None:
    """Turn captured constants into initializers (tf2onnx makes them graph inputs).

    Keras' ``Normalization(mean=..., variance=...)`` captures its statistics as eager
    constants; ``from_function`` lists every non-resource placeholder of the concrete
    function as an input, so the model wanted ``unknown:0``... fed by the caller.
    """
    from onnx import numpy_helper

    fn = source.function
    n_args = len(fn.inputs) - len(fn.captured_inputs)
    consts = {t.name: c for t, c in zip(fn.inputs[n_args:], fn.captured_inputs, strict=True)
              if t.dtype.name != "resource"}
    for v in [v for v in graph.input if v.name in consts]:
        graph.initializer.append(numpy_helper.from_array(consts[v.name].numpy(), v.name))
        graph.input.remove(v)


def _set_metadata(model, meta: dict) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(k), str(v)


@register
class ONNXExporter(Exporter):
    """ONNX models under ``onnx/model_<precision>.onnx``."""

    name = "onnx"
    precisions = SPECS["onnx"].precisions
    converter = "tf2onnx"

    def relpath(self, precision: Precision) -> str:
        return f"onnx/model_{Precision(precision).value}.onnx"

    def export(self, source, precision, out_dir: Path, options: ExportOptions) -> Produced:
        import onnx
        import onnxruntime as ort

        from edgekit.export import graph

        precision = Precision(precision)
        src = graph.prepared(source, self.name, options)
        fp32 = _fp32_model(src, options.opset)
        meta = {**options.metadata, "format": self.name, "precision": precision.value}
        path = out_dir / self.relpath(precision)
        path.parent.mkdir(parents=True, exist_ok=True)
        quant = None
        if precision == Precision.FP32:
            model = onnx.ModelProto()
            model.CopyFrom(fp32)
            model.producer_name, model.doc_string = "edgekit (tf2onnx)", f"{source.name} exported by edgekit"
            _set_metadata(model, meta)
            onnx.save(model, str(path))
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            model = onnx.ModelProto()
            model.CopyFrom(fp32)
            # reduce_range: 7-bit weights. x86-64 CPUs without VNNI (AVX2 only) run u8 x s8
            # MatMulInteger with vpmaddubsw, whose int16 pair sums saturate (onnxruntime's
            # quantization docs). Measured on moons_h3 on an AVX2-only EPYC: max |diff| vs fp32
            # 0.187 with full-range int8 weights, 0.0039 with reduce_range; a file must not
            # depend on the CPU it lands on.
            keep_float = None
            if options.keep_float:  # some layers stay float: nodes_to_exclude (export/quantdebug.py)
                from edgekit.export import quantdebug

                def quantize_to(nodes, dest, model=model):
                    quantize_dynamic(model, str(dest), weight_type=QuantType.QInt8, reduce_range=True,
                                     nodes_to_exclude=list(nodes))

                data, keep_float = quantdebug.select_onnx(model, quantize_to, source, options, out_dir)
                path.write_bytes(data)
            else:
                quantize_dynamic(model, str(path), weight_type=QuantType.QInt8, reduce_range=True)
            model = onnx.load(str(path))
            _set_metadata(model, meta)
            onnx.save(model, str(path))
            n_int = sum(1 for n in model.graph.node if n.op_type in ("DynamicQuantizeLinear",
                                                                       "MatMulInteger", "ConvInteger"))
            quant = {"weights": "int8 (QInt8 reduce_range: 7 bits, per tensor)",
                     "activations": "uint8, dynamic per batch",
                     "tool": f"onnxruntime.quantization.quantize_dynamic {ort.__version__}",
                     "quantized_ops": n_int}
            if keep_float is not None:
                quant["keep_float"] = keep_float
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def info(arg) -> dict:
            shape = [d if isinstance(d, int) else None for d in arg.shape]
            kind = arg.type.removeprefix("tensor(").removesuffix(")")
            return tensor_info(arg.name, shape, _ORT_DTYPES.get(kind, kind))

        ins = {a.name: info(a) for a in sess.get_inputs()}
        outs = {a.name: info(a) for a in sess.get_outputs()}
        missing = (set(source.input_names) - set(ins)) | (set(source.output_names) - set(outs))
        if missing:
            raise ValueError(f"ONNX model lacks inputs/outputs {sorted(missing)}")
        extra = set(ins) - set(source.input_names)
        if extra:
            raise ValueError(f"ONNX model has inputs the signature does not: {sorted(extra)}")
        probe = graph.probe_inputs(source, options, rows=2)  # it must run, not only load
        sess.run(None, {n: probe[n].astype(ins[n]["dtype"]) for n in source.input_names})
        return Produced(path=path, inputs=[ins[n] for n in source.input_names],
                        outputs=[outs[n] for n in source.output_names], quantization=quant,
                        embedded_metadata=meta,
                        extra={"opset": options.opset, **graph.manifest_extra(src.legalization),
                               "ran_in": f"onnxruntime {ort.__version__} CPUExecutionProvider"})

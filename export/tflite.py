"""TFLite / LiteRT export: fp32, fp16 weights, dynamic-range int8, full-integer int8.

Converted from the serving signature's frozen graph (:mod:`edgekit.export.graph`: an RNN's
unrolled Keras re-trace when ``model.keras`` is at hand, the rewrites TFLite needs) with
``tf.lite.TFLiteConverter.from_concrete_functions`` (the Keras-object entry point is broken
with Keras 3), builtin ops only unless ``ExportOptions.tflite_select_tf_ops`` allows Flex ops
(recorded as ``ops``/``flex_ops`` in the manifest: ai-edge-litert has no Flex delegate). The
``serving_default`` SignatureDef is written into the flatbuffer. The batch dimension stays
dynamic (shape_signature -1): resize it with ``interpreter.resize_tensor_input``. The
full-integer variant has int8 float-tensor inputs and outputs (integer inputs such as token ids
stay integers); scale/zero_point are in the manifest and in the model. Every file is loaded and
run once before it counts (``ran_in``).

Metadata: an ``edgekit`` entry in the flatbuffer's ``metadata`` table whose buffer holds
a JSON object (the TFLite Support ``TFLITE_METADATA`` schema needs the tflite-support
package, which does not install with this stack). Read it with :func:`read_metadata`.

Run on a device (Android, Raspberry Pi)::

    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path="tflite/model_fp32.tflite")
    run = it.get_signature_runner("serving_default")
    print(run(features=x.astype("float32")))          # {"output_0": ...}
    # int8 variant: q = round(x / scale + zero_point) as int8, y = (q_out - zp) * scale
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.core.formats import SPECS
from edgekit.export.base import Exporter, ExportOptions, Precision, Produced, tensor_info
from edgekit.export.registry import register

METADATA_NAME = "edgekit"


def embed_metadata(model: bytes, data: dict, name: str = METADATA_NAME,
                   signature: tuple[str, list[str], list[str]] | None = None) -> bytes:
    """Return ``model`` with a ``name`` metadata entry holding ``data`` as JSON (replaces one).

    Args:
        model: the flatbuffer.
        data: the metadata (JSON-serialisable).
        name: the metadata entry's name (default ``"edgekit"``).
        signature: ``(key, input names, output names)`` to write as the model's only SignatureDef
            when it has none, mapping the main subgraph's inputs and outputs by position (the
            converted function's order; default None).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if signature is not None and not obj.signatureDefs:
        key, ins, outs = signature
        sub = obj.subgraphs[0]
        if len(sub.inputs) != len(ins) or len(sub.outputs) != len(outs):
            raise ValueError(f"the converted graph has {len(sub.inputs)} inputs and {len(sub.outputs)} outputs, "
                             f"the signature {len(ins)} and {len(outs)}")
        sig = schema.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = key, 0
        sig.inputs, sig.outputs = [], []
        for names, idx, into in ((ins, sub.inputs, sig.inputs), (outs, sub.outputs, sig.outputs)):
            for n, t in zip(names, idx, strict=True):
                m = schema.TensorMapT()
                m.name, m.tensorIndex = n, int(t)
                into.append(m)
        obj.signatureDefs = [sig]
    obj.metadata = [m for m in (obj.metadata or []) if m.name not in (name, name.encode())]
    buf = schema.BufferT()
    buf.data = list(json.dumps(data, sort_keys=True).encode())
    obj.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(obj.buffers) - 1
    obj.metadata.append(entry)
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(model: bytes | Path, name: str = METADATA_NAME) -> dict | None:
    """Read the JSON metadata entry ``name`` from a .tflite file or bytes (no TensorFlow needed)."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    m = schema.Model.GetRootAs(data, 0)
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        if md.Name() and md.Name().decode() == name:
            return json.loads(m.Buffers(md.Buffer()).DataAsNumpy().tobytes().decode())
    return None


def _representative(options: ExportOptions, source):
    import numpy as np

    arrays = options.calibration or {}
    dtypes = {i["name"]: np.dtype(i.get("dtype", "float32")) for i in source.inputs}
    n = min(min(len(a) for a in arrays.values()), options.calibration_samples)
    idx = np.linspace(0, min(len(a) for a in arrays.values()) - 1, n).round().astype(int)

    def gen():  # rows in each input's own dtype (integer ids stay integers)
        for i in idx:
            yield {k: a[i : i + 1].astype(dtypes.get(k, a.dtype)) for k, a in arrays.items()}

    return gen, n


@register
class TFLiteExporter(Exporter):
    """TFLite flatbuffers under ``tflite/model_<precision>.tflite``."""

    name = "tflite"
    precisions = SPECS["tflite"].precisions
    converter = "tensorflow"
    calibrated = SPECS["tflite"].calibrated

    def relpath(self, precision: Precision) -> str:
        return f"tflite/model_{Precision(precision).value}.tflite"

    def export(self, source, precision, out_dir: Path, options: ExportOptions) -> Produced:
        import tensorflow as tf

        from edgekit.export import graph

        precision = Precision(precision)
        src = graph.prepared(source, self.name, options)
        flex = bool(options.tflite_select_tf_ops)
        # The frozen graph, converted without a trackable: TFLite then skips saving a temporary
        # SavedModel per variant (its use here was the signature, written below instead). Full-integer
        # calibration runs the model through its signature: int8 keeps the SavedModel route.
        trackable = src.loaded if precision == Precision.INT8 else None
        conv = tf.lite.TFLiteConverter.from_concrete_functions([src.function], trackable_obj=trackable)
        quant: dict | None = None
        builtins = tf.lite.OpsSet.TFLITE_BUILTINS
        if precision == Precision.FP16:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
            quant = {"weights": "float16", "activations": "float32"}
        elif precision == Precision.INT8_DYNAMIC:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            quant = {"weights": "int8", "activations": "float32 (dynamic-range int8 kernels)",
                     "note": "tensors under ~1024 elements stay float"}
        elif precision == Precision.INT8:
            if not options.calibration:
                raise ValueError("full-integer int8 needs calibration data (--calibration FILE.npz)")
            gen, n = _representative(options, src)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = gen
            builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
            quant = {"weights": "int8", "activations": "int8",
                     "calibration": {"source": options.calibration_origin, "samples": n}}
        conv.target_spec.supported_ops = [builtins, tf.lite.OpsSet.SELECT_TF_OPS] if flex else [builtins]
        if flex:  # keep TensorList ops as Flex ops instead of failing to lower them (Keras 3 RNN loops)
            conv._experimental_lower_tensor_list_ops = False
        keep_float = None
        if precision == Precision.INT8 and options.keep_float:
            from edgekit.export import quantdebug

            model, keep_float = quantdebug.select(conv, source, options, out_dir)
            quant["keep_float"] = keep_float
        else:
            model = conv.convert()
        meta = {**options.metadata, "format": self.name, "precision": precision.value}
        model = embed_metadata(model, meta, signature=(source.signature_key, source.input_names,
                                                       source.output_names))
        path = out_dir / self.relpath(precision)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model)

        # Load it back and run it once in the real runtime: the I/O we record is what a device sees.
        from edgekit.runtime.tflite import flex_op_names

        flex_ops = flex_op_names(model)
        it, runtime = _interpreter(model, flex_ops)
        sigs = it.get_signature_list()
        if source.signature_key not in sigs and len(sigs) != 1:
            raise ValueError(f"converted model has signatures {sorted(sigs)}, "
                             f"expected {source.signature_key}")
        key = source.signature_key if source.signature_key in sigs else next(iter(sigs))
        from edgekit.runtime.tflite import signature_io

        key, ins, outs = signature_io(it, key)  # the names and details the device adapter will see
        missing = set(source.input_names) - set(ins) | set(source.output_names) - set(outs)
        if missing:
            raise ValueError(f"converted model lacks signature tensors {sorted(missing)}")
        _run_once(it, key, ins, graph.probe_inputs(source, options, rows=2), source.outputs)

        def info(name: str, d: dict) -> dict:
            shape = d.get("shape_signature", d["shape"])
            return tensor_info(name, shape, d["dtype"].__name__)

        inputs = [info(n, ins[n]) for n in source.input_names]
        outputs = [info(n, outs[n]) for n in source.output_names]
        if precision == Precision.INT8:
            quant["inputs"] = {n: _qparams(ins[n]) for n in source.input_names if _is_quantized(ins[n])}
            quant["outputs"] = {n: _qparams(outs[n]) for n in source.output_names if _is_quantized(outs[n])}
        extra = {"signature": key, "metadata_entry": METADATA_NAME, **graph.manifest_extra(src.legalization),
                 "ops": "builtins+flex" if flex_ops else "builtins", "ran_in": runtime}
        if flex:
            extra["select_tf_ops"] = True
        if flex_ops:
            extra["flex_ops"] = flex_ops
            extra["cannot_load_in"] = ["ai-edge-litert (no Flex delegate in the wheel)",
                                       "tflite-runtime (no Flex delegate)"]
        return Produced(path=path, inputs=inputs, outputs=outputs, quantization=quant,
                        embedded_metadata=meta, extra=extra)


def _interpreter(model: bytes, flex_ops: list[str]):
    """An allocated interpreter for ``model`` and a description of it. A file with Flex ops cannot
    load in ai-edge-litert (its wheel has no Flex delegate): TensorFlow's own interpreter runs it."""
    if flex_ops:
        import tensorflow as tf

        it = tf.lite.Interpreter(model_content=model)
        runtime = f"tf.lite.Interpreter {tf.__version__} (Flex delegate)"
    else:
        from ai_edge_litert.interpreter import Interpreter

        from edgekit.runtime.base import package_version

        it = Interpreter(model_content=model)
        runtime = f"ai-edge-litert {package_version('ai-edge-litert')}"
    it.allocate_tensors()
    return it, runtime


def _is_quantized(detail: dict) -> bool:
    scale, _ = detail["quantization"]
    return bool(scale)


def _run_once(it, key: str, ins: dict, feeds: dict, outputs: list) -> None:
    """Invoke the signature once on ``feeds`` (quantizing int8 inputs): the file must run, not only
    load, and give every output in the signature's shape."""
    import numpy as np

    from edgekit.runtime.tflite import quantize

    runner = it.get_signature_runner(key)
    args = {}
    for name, d in ins.items():
        x = feeds[name]
        if np.dtype(d["dtype"]).kind in "iu" and _is_quantized(d):
            scale, zero = d["quantization"]
            x = quantize(x, scale, zero, d["dtype"])
        args[name] = np.asarray(x, dtype=d["dtype"])
    out = runner(**args)
    rows = len(next(iter(feeds.values())))
    for info in outputs:
        got = out.get(info["name"])
        want = [rows, *info["shape"][1:]] if info["shape"] else []
        if got is None or len(got.shape) != len(want) or any(w is not None and w != g
                                                             for w, g in zip(want, got.shape, strict=True)):
            raise ValueError(f"the converted model's output {info['name']!r} has shape "
                             f"{None if got is None else list(got.shape)}, the signature's is {want}")


def _qparams(detail: dict) -> dict:
    scale, zero = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zero), "dtype": detail["dtype"].__name__}

"""Core ML export: ML Program ``.mlpackage`` with fp32 or fp16 compute precision.

Converted from the SavedModel's serving signature: ``coremltools.convert`` on the
SavedModel directory fails ("Only a single concrete function is supported": Keras writes
two signatures), so the concrete function is passed, with the loaded SavedModel kept
alive. The batch dimension is flexible: ``RangeDim(1, max_batch)`` (default 1024; ML
Programs need a finite bound). Inputs and outputs are renamed to the signature's names
(``features`` -> ``output_0``); metadata goes in ``user_defined_metadata``.

Run on a Mac / iOS::

    import coremltools as ct
    m = ct.models.MLModel("coreml/model_fp32.mlpackage")
    print(m.predict({"features": x.astype("float32")}))   # {"output_0": ...}

(On Linux the model can be loaded with ``skip_model_load=True`` but not executed.)
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgekit.core.formats import SPECS
from edgekit.export.base import Exporter, ExportOptions, Precision, Produced, tensor_info
from edgekit.export.registry import register


@register
class CoreMLExporter(Exporter):
    """ML Program packages under ``coreml/model_<precision>.mlpackage``."""

    name = "coreml"
    precisions = SPECS["coreml"].precisions
    converter = "coremltools"

    def relpath(self, precision: Precision) -> str:
        return f"coreml/model_{Precision(precision).value}.mlpackage"

    def export(self, source, precision, out_dir: Path, options: ExportOptions) -> Produced:
        from edgekit.core.errors import require

        for noisy in ("coremltools", "coremltools.converters"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        ct = require("coremltools", "export")

        from edgekit.export import graph

        precision = Precision(precision)
        src = graph.prepared(source, self.name, options)
        compute = ct.precision.FLOAT32 if precision == Precision.FP32 else ct.precision.FLOAT16
        placeholders = {n: src.input_tensors[n].split(":")[0] for n in source.input_names}
        inputs = [ct.TensorType(name=placeholders[i["name"]],
                                shape=(ct.RangeDim(1, options.max_batch), *i["shape"][1:]),
                                dtype=coreml_input_dtype(i.get("dtype", "float32")))
                  for i in source.inputs]
        mlmodel = ct.convert([src.function], source="tensorflow", convert_to="mlprogram",
                             inputs=inputs, compute_precision=compute, skip_model_load=True)
        spec = mlmodel.get_spec()
        renames = {placeholders[n]: n for n in source.input_names}
        renames.update({src.output_tensors[n].split(":")[0]: n for n in source.output_names})
        have = {f.name for f in spec.description.input} | {f.name for f in spec.description.output}
        for old, new in renames.items():
            if old != new and old in have:
                ct.utils.rename_feature(spec, old, new)
        got_out = [f.name for f in spec.description.output]
        if sorted(got_out) != sorted(source.output_names):
            raise ValueError(f"Core ML outputs {got_out} do not match the signature's {source.output_names}")
        model = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
        meta = {**options.metadata, "format": self.name, "precision": precision.value}
        for k, v in meta.items():
            model.user_defined_metadata[k] = str(v)
        model.author = "edgekit"
        model.short_description = f"{source.name} exported by edgekit ({precision.value} compute)"
        path = out_dir / self.relpath(precision)
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(str(path))

        # Read the package back as a device would get it and record its I/O.
        saved = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
        ins = {f.name: f for f in saved.description.input}
        missing = [n for n in source.input_names if n not in ins]
        if missing:
            raise ValueError(f"Core ML package lacks inputs {missing}")
        from edgekit.runtime.coreml import SPEC_DTYPES

        def dtype(feature) -> str:
            arr = feature.type.multiArrayType
            return SPEC_DTYPES.get(type(arr).ArrayDataType.Name(arr.dataType), "float32")

        outs = {f.name: f for f in saved.description.output}
        info_in = [tensor_info(i["name"], i["shape"], dtype(ins[i["name"]])) for i in source.inputs]
        info_out = [tensor_info(o["name"], o["shape"], dtype(outs[o["name"]])) for o in source.outputs]
        quant = None if precision == Precision.FP32 else {"compute_precision": "float16",
                                                          "weights": "float16"}
        extra = {"model_type": "mlprogram", "specification_version": saved.specificationVersion,
                 "batch_range": [1, options.max_batch], **graph.manifest_extra(src.legalization)}
        extra.update(run_once(path, graph.probe_inputs(source, options, rows=2)))
        return Produced(path=path, inputs=info_in, outputs=info_out, quantization=quant,
                        embedded_metadata=meta, extra=extra)


# Core ML ML Program inputs are float16/float32/int32 (coremltools refuses uint8, and turns a bool
# input into float32): integer and bool inputs are declared int32 — every uint8/int8/int16/uint16/
# bool value fits exactly, and the converter casts back to the graph's dtype at the input. int64
# ids are declared int32 as well (Core ML has no int64 tensors; ids past 2**31 do not occur in
# Embedding vocabularies). The same contract is what `edgekit check` prints (export/check.py).
COREML_INPUT_DTYPES = {"float32": "float32", "float16": "float16", "float64": "float32", "int32": "int32",
                       "uint8": "int32", "int8": "int32", "int16": "int32", "uint16": "int32", "int64": "int32",
                       "bool": "int32"}


def coreml_input_dtype(dtype: str):
    """The numpy type a Core ML input of graph dtype ``dtype`` is declared with (see COREML_INPUT_DTYPES)."""
    import numpy as np

    return np.dtype(COREML_INPUT_DTYPES.get(str(dtype), str(dtype))).type


def run_once(path: Path, feeds: dict) -> dict:
    """Run the saved package once: Core ML itself on macOS, else edgekit's reference evaluator.

    Returns:
        ``{"ran_in": runtime}``, or ``{"ran_in": None, "not_run": why}`` when the evaluator lacks an
        operation of the program (verify then reports the file ``unverified``, naming the op).

    Raises:
        RuntimeFailure: the package does not load or run.
    """
    from edgekit.core.errors import Unverifiable
    from edgekit.runtime.coreml import CoreMLRunner

    try:
        with CoreMLRunner(path) as runner:
            import numpy as np

            # integer inputs declared int32 (COREML_INPUT_DTYPES) are fed as a device app would
            runner.predict({i.name: np.asarray(feeds[i.name]).astype(i.dtype, copy=False) for i in runner.inputs})
            return {"ran_in": runner.runtime_name}
    except Unverifiable as exc:
        return {"ran_in": None, "not_run": str(exc)}

"""Core ML adapter: Core ML itself on macOS, a numpy reference evaluator everywhere else.

Core ML cannot run on Linux (coremltools' ``MLModel.predict`` needs macOS's framework). Off
macOS the ``.mlpackage``'s ML Program is read back with
``coremltools.converters.mil.frontend.milproto`` and executed op by op in numpy with the
program's own dtypes (see :mod:`edgekit.runtime.coreml_ops`); ``runtime_name`` says which one ran:
``"coremltools MLModel (macOS)"`` or ``"coreml numpy reference evaluator (fp16|fp32)"``.

Note: coremltools imports TensorFlow at its own import when TensorFlow is installed (its
``_deps`` probe), which costs ~5 s in a full dev venv; a runtime-only install has no
TensorFlow and pays nothing. On an iPhone or a Mac::

    import coremltools as ct
    y = ct.models.MLModel("model.mlpackage").predict({"features": x})["output_0"]
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from edgekit.core.errors import DependencyError, InputError, UsageError
from edgekit.runtime.base import Runner, TensorInfo, package_version
from edgekit.runtime.registry import register

EVALUATORS = ("auto", "native", "reference")
#: Core ML feature array dtypes (ArrayFeatureType.ArrayDataType names) -> numpy.
SPEC_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32"}


def _coremltools():
    try:
        import coremltools
    except ImportError as exc:
        raise DependencyError("coremltools is needed to read Core ML models", got=str(exc),
                              expected="pip install 'edgekit[coreml]' (or make setup)") from exc
    return coremltools


def _feature_info(feature, mil_var=None) -> tuple[TensorInfo, int | None]:
    """TensorInfo of a model description feature (and the batch upper bound of a range)."""
    from coremltools.proto import FeatureTypes_pb2

    kind = feature.type.WhichOneof("Type")
    if kind != "multiArrayType":
        raise InputError("Core ML feature is not a multi-array (images etc. are not supported)",
                         got=f"{feature.name}: {kind}", expected="multiArrayType")
    arr = feature.type.multiArrayType
    dtype = SPEC_DTYPES.get(FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType), "float32")
    bound = None
    if arr.WhichOneof("ShapeFlexibility") == "shapeRange":
        ranges = arr.shapeRange.sizeRanges
        shape = tuple(r.lowerBound if r.lowerBound == r.upperBound else None for r in ranges)
        if ranges and ranges[0].upperBound > 0 and shape[0] is None:
            bound = int(ranges[0].upperBound)
    elif arr.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
        shapes = [tuple(s.shape) for s in arr.enumeratedShapes.shapes]
        shape = tuple(d[0] if len(set(d)) == 1 else None for d in zip(*shapes, strict=True))
    elif mil_var is not None:
        shape = tuple(d if isinstance(d, (int, np.integer)) else None for d in mil_var.shape)
    else:
        shape = tuple(arr.shape)
    return TensorInfo(feature.name, shape, dtype), bound


def _check_confined(package: Path) -> None:
    """Refuse an ``.mlpackage`` whose ``Manifest.json`` items or files lead outside it.

    coremltools follows ``itemInfoEntries[*].path`` (relative to ``Data/``) and symlinks
    wherever they point. An unreadable Manifest.json is left to coremltools to report.

    Raises:
        InputError: an item path or a file resolves outside the package.
    """
    if not package.is_dir():
        return
    from edgekit.runtime.manifest import confined

    try:
        items = json.loads((package / "Manifest.json").read_text())["itemInfoEntries"]
        rels = [str(e["path"]) for e in items.values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        rels = []
    try:
        for rel in rels:
            confined(package / "Data", rel)
        for entry in sorted(package.rglob("*")):
            confined(package, entry.relative_to(package).as_posix())
    except InputError as exc:
        raise InputError("Core ML package points outside itself", got=f"{package}: {exc}",
                         expected="item paths and files inside the .mlpackage") from exc


@register
class CoreMLRunner(Runner):
    """Runs a Core ML ``.mlpackage`` (ML Program; ``.mlmodel`` only natively on macOS).

    Options:
        evaluator: ``"auto"`` (default: Core ML on macOS, the numpy reference evaluator
            elsewhere), ``"native"`` or ``"reference"``.
        compute_units: Core ML compute units on macOS (default ``"CPU_ONLY"``, deterministic;
            ``"ALL"`` lets Core ML pick the GPU/Neural Engine).
    """

    format = "coreml"
    OPTIONS = {"evaluator": "auto", "compute_units": "CPU_ONLY"}

    def __init__(self, path, **options):
        super().__init__(path, **options)
        if self.options["evaluator"] not in EVALUATORS:
            raise UsageError("unknown Core ML evaluator", got=self.options["evaluator"],
                             expected=list(EVALUATORS))

    def _load(self) -> None:
        _check_confined(self.path)
        ct = _coremltools()
        mode = self.options["evaluator"]
        if mode == "auto":
            mode = "native" if platform.system() == "Darwin" else "reference"
        if mode == "native":
            self._load_native(ct)
        else:
            self._load_reference(ct)

    def _load_native(self, ct) -> None:
        if platform.system() != "Darwin":
            raise UsageError("Core ML itself runs only on macOS", got=platform.system(),
                             expected='evaluator="reference" (or "auto") on this machine')
        units = getattr(ct.ComputeUnit, str(self.options["compute_units"]), None)
        if units is None:
            raise UsageError("unknown Core ML compute units", got=self.options["compute_units"],
                             expected=[u.name for u in ct.ComputeUnit])
        self._model = ct.models.MLModel(str(self.path), compute_units=units)
        spec = self._model.get_spec()
        self._set_io(spec, None)
        self._evaluate = self._predict_native
        self.runtime_name = f"coremltools MLModel (macOS) {package_version('coremltools')}"

    def _load_reference(self, ct) -> None:
        from coremltools.converters.mil.frontend.milproto import load as milproto_load

        from edgekit.runtime.coreml_ops import MilEvaluator

        model = ct.models.MLModel(str(self.path), skip_model_load=True)
        spec = model.get_spec()
        if spec.WhichOneof("Type") != "mlProgram":
            raise InputError("only ML Programs can be evaluated off macOS", got=spec.WhichOneof("Type"),
                             expected="an .mlpackage converted with convert_to='mlprogram'")
        program = milproto_load.load(spec, specification_version=spec.specificationVersion,
                                     file_weights_dir=model.weights_dir)
        self._eval = MilEvaluator(program)
        self._set_io(spec, self._eval.function)
        self._evaluate = self._eval
        prec = "fp16" if self._eval.computes_fp16 else "fp32"
        self.runtime_name = f"coreml numpy reference evaluator ({prec})"

    def _set_io(self, spec, function) -> None:
        mil_in = dict(function.inputs) if function is not None else {}
        mil_out = {v.name: v for v in function.outputs} if function is not None else {}
        ins = [_feature_info(f, mil_in.get(f.name)) for f in spec.description.input]
        self.inputs = [i for i, _ in ins]
        bounds = [b for _, b in ins if b]
        self.max_batch = min(bounds) if bounds else None
        self.outputs = [_feature_info(f, mil_out.get(f.name))[0] for f in spec.description.output]
        if function is not None:
            names = {o.name for o in self.outputs} - set(mil_out)
            if names:
                raise InputError("Core ML outputs are not produced by the program", got=sorted(names),
                                 expected=sorted(mil_out))

    def _predict_native(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._model.predict(feeds)
        return {o.name: np.asarray(out[o.name]) for o in self.outputs}

    def _predict_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._evaluate(feeds)
        return {o.name: np.asarray(out[o.name]).astype(o.dtype, copy=False) for o in self.outputs}

    # ---------------------------------------------------------------- intermediates (edgekit explain)
    supports_intermediates = True

    def _intermediates_impl(self, feeds: dict[str, np.ndarray]):
        """Every op output of the numpy reference evaluator's run (off macOS; Core ML itself exposes none)."""
        from edgekit.core.errors import Unverifiable
        from edgekit.runtime.intermediates import Intermediates, Producer

        if self._eval is None:
            raise Unverifiable("Core ML (the native runtime) does not expose intermediate tensors",
                               got=self.runtime_name, expected="the numpy reference evaluator (off macOS)")
        values = self._eval(feeds, keep_all=True)
        producers = {name: Producer(op, op_name, ins) for name, op, op_name, ins in self._eval.producers()}
        return Intermediates(values, producers, outputs={o.name: o.name for o in self.outputs if o.name in values})

    def _close(self) -> None:
        self._model = self._eval = self._evaluate = None

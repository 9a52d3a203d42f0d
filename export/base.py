"""The exporter interface: precisions, options, results, and the base class every format implements.

A format module (``export/tflite.py``, ...) subclasses :class:`Exporter`, declares its
``name``, the ``precisions`` it supports and where each variant goes inside the export
directory, and implements :meth:`Exporter.export`. It registers itself with
:func:`edgekit.export.registry.register`. Heavy libraries (tensorflow, coremltools, ...) are
imported inside ``export`` only, so importing this module (and the CLI) stays fast.
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgekit.core.formats import Precision

if TYPE_CHECKING:  # pragma: no cover
    from edgekit.export.source import SourceModel


@dataclass(frozen=True)
class ExportOptions:
    """Options shared by every exporter, validated once by :func:`edgekit.export.api.export_model`.

    Attributes:
        opset: ONNX opset (default 17).
        max_batch: upper bound of Core ML's flexible batch range ``RangeDim(1, max_batch)``
            (default 1024; Core ML ML Programs need a finite bound).
        calibration: representative inputs for full-integer quantization, keyed by input
            name, each in its input's dtype (float, integer ids, uint8 pixels, bool), first
            axis = samples (default None: no calibration data).
        calibration_origin: where ``calibration`` came from, for the manifest (default "").
        calibration_samples: at most this many calibration rows are used (default 200).
        metadata: string key/value metadata embedded in every artifact (default empty).
        tflite_select_tf_ops: let TFLite use Flex (TensorFlow) ops for what has no builtin
            (default False: builtins only; a Flex file does not load in ai-edge-litert).
        keep_float: Keras layers the TFLite int8 and ONNX int8_dynamic variants keep in float, or
            ``("auto",)``: the worst layers until each meets verify's tolerance
            (:mod:`edgekit.export.quantdebug`; default empty: everything int8).
    """

    opset: int = 17
    max_batch: int = 1024
    calibration: dict | None = None
    calibration_origin: str = ""
    calibration_samples: int = 200
    metadata: dict = field(default_factory=dict)
    tflite_select_tf_ops: bool = False
    keep_float: tuple = ()


def tensor_info(name: str, shape, dtype: str) -> dict:
    """A manifest TensorInfo: ``{"name", "shape": [int|None, ...], "dtype"}``."""
    return {"name": str(name), "shape": [None if d is None or int(d) < 0 else int(d) for d in shape],
            "dtype": str(dtype)}


@dataclass(frozen=True)
class Produced:
    """What an exporter made for one variant.

    Attributes:
        path: the produced file or directory (inside the staging directory).
        inputs: TensorInfo dicts as the target runtime names and types them.
        outputs: TensorInfo dicts, same order as the source signature's outputs.
        quantization: quantization description (scale/zero_point for int8 I/O) or None.
        embedded_metadata: the metadata written into the artifact (or None if the format
            has no place for it).
        extra: format-specific facts for the manifest (e.g. ``{"signature": "serving_default"}``).
    """

    path: Path
    inputs: list
    outputs: list
    quantization: dict | None = None
    embedded_metadata: dict | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VariantResult:
    """Outcome of one (format, precision) variant in an export run.

    ``status`` is ``"ok"``, ``"failed"`` (converter error, recorded in the manifest) or
    ``"skipped"`` (not attempted, e.g. int8 with no calibration data; ``error`` says why).
    """

    format: str
    precision: str
    status: str
    seconds: float = 0.0
    path: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class ExportReport:
    """Result of :func:`edgekit.export.api.export_model`.

    Attributes:
        source: the SOURCE path given.
        out_dir: the export directory (holds ``manifest.json``).
        results: one entry per planned variant, in plan order.
        seconds: wall time of the whole run (loading included).
        kind: what SOURCE was: ``"example"``, ``"savedmodel"``, ``"keras"`` or ``"live"`` (default "").
        reference_error: why no golden file was written for a Keras source (an integer input
            of unknown range: verify then needs ``--inputs`` or ``--int-range``), or None.
        preflight: what ``edgekit check`` predicted before converting, one line per format it
            expects not to give a verified file (default empty: every format looked fine).
    """

    source: Path
    out_dir: Path
    results: tuple
    seconds: float
    kind: str = ""
    reference_error: str | None = None
    preflight: tuple = ()

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.json"

    @property
    def failures(self) -> list:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """True if no variant failed (skipped variants do not count as failures)."""
        return not self.failures

    def __bool__(self) -> bool:
        return self.ok

    @property
    def out(self) -> Path:
        """The export directory (same as ``out_dir``)."""
        return self.out_dir

    def to_dict(self) -> dict:
        """A JSON-ready summary: source, export directory, seconds and one dict per variant."""
        import dataclasses

        return {"source": str(self.source), "out_dir": str(self.out_dir), "seconds": self.seconds,
                "ok": self.ok, "kind": self.kind, "reference_error": self.reference_error,
                "preflight": list(self.preflight), "results": [dataclasses.asdict(r) for r in self.results]}


class Exporter(ABC):
    """One target format. Subclasses set the class attributes and implement :meth:`export`.

    Attributes:
        name: the format's registry key (``tflite``, ``coreml``, ...).
        precisions: the precisions this format supports, in default order.
        converter: the PyPI distribution doing the conversion (its version goes in the manifest).
        calibrated: precisions that need representative data (default none).
    """

    name: ClassVar[str]
    precisions: ClassVar[tuple]  # = SPECS[name].precisions (edgekit.core.formats)
    converter: ClassVar[str]
    calibrated: ClassVar[tuple] = ()  # = SPECS[name].calibrated

    def relpath(self, precision: Precision) -> str:
        """Where a variant goes, relative to the export directory (POSIX)."""
        raise NotImplementedError

    def needs_calibration(self, precision: Precision) -> bool:
        return Precision(precision) in self.calibrated

    def converter_version(self) -> str:
        try:
            return importlib.metadata.version(self.converter)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    @abstractmethod
    def export(self, source: SourceModel, precision: Precision, out_dir: Path,
               options: ExportOptions) -> Produced:
        """Convert ``source`` at ``precision`` into ``out_dir / self.relpath(precision)``.

        Raises any converter exception; the caller records it as a failed variant.
        """

"""The one list of formats and their precisions, read by every layer.

The exporters (:mod:`edgekit.export.registry`), the runtime adapters
(:mod:`edgekit.runtime.registry`), the tolerance policy (:mod:`edgekit.parity.tolerance`),
verify, bench and every CLI take their choices from here; each registry refuses an entry
that is not listed, and a test checks that every format listed has an exporter, a runner
and a tolerance for each precision. Adding a format starts with one line here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Precision(enum.StrEnum):
    """Numeric precision of an exported variant."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8_dynamic"  # int8 weights, float activations (no calibration data needed)
    INT8 = "int8"  # full integer: int8 weights and activations, calibrated
    UINT8 = "uint8"  # TF.js weight quantization (uint8 weights, float compute)


@dataclass(frozen=True)
class FormatSpec:
    """One deployable format.

    Attributes:
        name: the registry key (``"tflite"``).
        title: how people call it (``"TFLite / LiteRT"``).
        precisions: the precisions edgekit exports, in default order.
        calibrated: precisions that need representative data.
        devices: where the file runs.
    """

    name: str
    title: str
    precisions: tuple[Precision, ...]
    calibrated: tuple[Precision, ...] = ()
    devices: str = ""


P = Precision
SPECS: dict[str, FormatSpec] = {s.name: s for s in (
    FormatSpec("tflite", "TFLite / LiteRT", (P.FP32, P.FP16, P.INT8_DYNAMIC, P.INT8), (P.INT8,),
               "Android, Raspberry Pi, microcontrollers"),
    FormatSpec("coreml", "Core ML ML Program", (P.FP32, P.FP16), (), "iOS, macOS"),
    FormatSpec("tfjs", "TensorFlow.js graph model", (P.FP32, P.FP16, P.UINT8), (), "browser, Node.js"),
    FormatSpec("onnx", "ONNX", (P.FP32, P.INT8_DYNAMIC), (), "ONNX Runtime: servers, desktop, mobile"),
)}

#: every deployable format, in the order tables show them.
FORMATS: tuple[str, ...] = tuple(SPECS)

#: reference runtimes: not exported by edgekit's converters, but opened by the runtime registry.
REFERENCE_FORMATS: tuple[str, ...] = ("savedmodel", "keras")  # keras: issue 11 (the .keras reference runner)

#: the TF.js backends verify runs in Node.
TFJS_BACKENDS: tuple[str, ...] = ("cpu", "wasm")


def variants() -> list[tuple[str, Precision]]:
    """Every (format, precision) pair, in table order."""
    return [(f, p) for f, s in SPECS.items() for p in s.precisions]

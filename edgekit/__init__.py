"""edgekit: Keras models from training to the devices they run on, with a parity verdict.

The Python API (each function imports its heavy modules when called, so ``import edgekit``
stays fast and TensorFlow-free)::

    import edgekit

    report = edgekit.export("model.keras", formats=["tflite", "onnx"])   # -> ExportReport
    verdict = edgekit.verify(report.out)                                 # -> VerifyReport
    print(verdict.summary(), bool(verdict))
    with edgekit.load(report.out / "tflite" / "model_fp32.tflite") as runner:
        y = runner.predict(x)

Layers (one installed namespace; import-linter checks that imports run one way)::

    edgekit.cli, edgekit.api                      the command line and this API
    edgekit.{train, export, bench, report, web}    the tools
    edgekit.parity                                 comparison, tolerances, metrics, verify
    edgekit.runtime                                device adapters (no TensorFlow)
    edgekit.core                                   errors, files, formats, tables

``edgekit.export`` and ``edgekit.bench`` are both sub-packages and functions: calling the
module runs :func:`edgekit.api.export` / :func:`edgekit.api.bench` (see
:mod:`edgekit.core.callmod`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekit.core.version import __version__

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from edgekit.api import ExportReport, VerifyReport, load, verify

__all__ = ["__version__", "check", "explain", "export", "verify", "load", "bench", "ExportReport", "VerifyReport"]

_API = {"check", "explain", "verify", "load", "ExportReport", "VerifyReport", "VerifyRow"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from edgekit import api

        return getattr(api, name)
    if name in ("export", "bench"):  # callable sub-packages
        import importlib

        return importlib.import_module(f"edgekit.{name}")
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _API)

"""The one list of runtime adapters: ``RUNNERS`` (format -> Runner class), filled by ``@register``.

Format detection from the path and ``open_model`` (construct + load) live here too; the CLI
choices and the conformance test matrix read ``RUNNERS``. Importing this module imports the
adapter modules, none of which imports its runtime at module level.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edgekit.core.errors import InputError, UsageError
from edgekit.core.formats import FORMATS, REFERENCE_FORMATS
from edgekit.runtime.base import Runner

RUNNERS: dict[str, type[Runner]] = {}

#: adapter modules imported (in this order) to fill RUNNERS.
#: the reference runners (SavedModel, Keras) need TensorFlow and live above, in
#: :mod:`edgekit.parity.reference`, which registers them here when imported.
ADAPTER_MODULES = ("edgekit.runtime.tflite", "edgekit.runtime.onnx", "edgekit.runtime.tfjs", "edgekit.runtime.coreml")


def register(cls: type[Runner]) -> type[Runner]:
    """Class decorator adding a Runner subclass to ``RUNNERS`` under its ``format``.

    Raises:
        UsageError: no ``format``, not a Runner, or the format is already registered.
    """
    if not isinstance(cls, type) or not issubclass(cls, Runner):
        raise UsageError("only Runner subclasses can be registered", got=cls, expected="a Runner subclass")
    if not cls.format:
        raise UsageError(f"{cls.__name__} has no format name", expected="a non-empty `format` ClassVar")
    if cls.format not in FORMATS + REFERENCE_FORMATS:
        raise UsageError(f"{cls.__name__} is for a format edgekit.core.formats does not list", got=cls.format,
                         expected=list(FORMATS + REFERENCE_FORMATS))
    existing = RUNNERS.get(cls.format)
    if existing is not None and existing is not cls:
        raise UsageError(f"runtime format {cls.format!r} is already registered",
                         got=cls.__qualname__, expected=f"one runner per format ({existing.__qualname__})")
    RUNNERS[cls.format] = cls
    return cls


def runner_class(fmt: str) -> type[Runner]:
    """The registered Runner class for a format name.

    Raises:
        UsageError: unknown format.
    """
    try:
        return RUNNERS[fmt]
    except KeyError:
        if fmt in REFERENCE_FORMATS:
            raise UsageError(f"the {fmt} runner is not loaded (it needs TensorFlow)", got=fmt,
                             expected="import edgekit.parity.reference first, or use edgekit.load()") from None
        raise UsageError("unknown model format", got=fmt, expected=sorted(RUNNERS)) from None


def detect_format(path: str | Path) -> str:
    """Guess the format from the path.

    ``.tflite`` -> tflite, ``.onnx`` -> onnx, ``.mlpackage``/``.mlmodel`` -> coreml,
    a directory with ``model.json`` -> tfjs (``model.json`` itself also works), a directory
    with ``saved_model.pb`` -> savedmodel.

    Raises:
        InputError: missing path or unrecognised layout.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("model path does not exist", got=str(p), expected="a model file or directory")
    suffix = p.suffix.lower()
    if suffix == ".tflite":
        return "tflite"
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".mlpackage", ".mlmodel"):
        return "coreml"
    if p.is_dir() and (p / "model.json").is_file() or p.name == "model.json" and p.is_file():
        return "tfjs"
    if p.is_dir() and (p / "saved_model.pb").is_file():
        return "savedmodel"
    raise InputError("cannot tell the model format from the path", got=str(p),
                     expected="*.tflite, *.onnx, *.mlpackage/*.mlmodel, a directory with model.json (TF.js) "
                              "or with saved_model.pb (SavedModel)")


def open_model(path: str | Path, format: str | None = None, **options: Any) -> Runner:
    """Construct and load the runner for ``path``.

    Args:
        path: the model file or directory.
        format: a key of ``RUNNERS`` (default None = :func:`detect_format`).
        **options: passed to the runner (e.g. ``num_threads=1``, ``backend="wasm"``).

    Returns:
        A loaded runner (use it as a context manager or call ``close()``).
    """
    fmt = format or detect_format(path)
    p = Path(path)
    if fmt == "tfjs" and p.name == "model.json" and p.is_file():
        p = p.parent
    return runner_class(fmt)(p, **options).load()


for _name in ADAPTER_MODULES:
    importlib.import_module(_name)

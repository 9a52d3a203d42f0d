"""What ``edgekit serve`` serves: one model per example (and per extra precision), from the manifests.

:func:`plan` reads every export manifest under the given directories (an artifacts root, an
example dir or an exports dir, as ``edgekit verify`` takes them), picks each example's file of
the chosen format and precisions and checks its sha256 against the manifest **before**
anything is served: a tampered or missing file stops the start with an
:class:`~edgekit.core.errors.IntegrityError` / :class:`~edgekit.core.errors.InputError`
(exit 2) and nothing listens. The runtime checks the digest again when it loads the file.

Names: an example is served as ``NAME`` (its first precision, default ``fp32``) and, for each
further precision asked for, as ``NAME-PRECISION``. The version is the SavedModel's version
directory (``saved_model/1`` -> ``"1"``, TF Serving's layout), ``"1"`` when it has none.

The served interface (names, shapes, datatypes) is the manifest's, as the runtime adapter
presents it: a full-integer int8 file takes and returns float32 (the adapter quantizes with the
file's own scale and zero point), so its served dtypes are the source signature's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgekit.core.errors import InputError, UsageError
from edgekit.runtime import manifest as mf
from edgekit.runtime.base import TensorInfo
from edgekit.runtime.discover import find_manifests

#: formats ``edgekit serve`` runs (the server-side runtimes: LiteRT and ONNX Runtime).
SERVE_FORMATS = ("tflite", "onnx")
DEFAULT_VERSION = "1"

#: numpy dtype name -> Open Inference Protocol datatype (the ones edgekit's runtimes take).
OIP_DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int8": "INT8", "int16": "INT16",
                 "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
                 "uint64": "UINT64", "bool": "BOOL"}
NUMPY_DTYPES = {v: k for k, v in OIP_DATATYPES.items()}

_NAME_OK = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ServedModel:
    """One model the server answers for.

    Attributes:
        name: the served name (``moons_h3``, ``moons_h3-int8``).
        version: the served version (``"1"``).
        format: ``tflite`` or ``onnx``.
        precision: the variant's precision.
        path: the verified file.
        sha256: its digest from the manifest (checked again at load).
        inputs, outputs: the served interface.
        example, task: from the manifest's source (None for a bare SavedModel).
        labels: class labels of a classifier (empty otherwise).
    """

    name: str
    version: str
    format: str
    precision: str
    path: Path
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    example: str | None = None
    task: str | None = None
    labels: tuple[str, ...] = ()

    def to_extra(self) -> dict:
        """The JSON-able description handed to the MLServer runtime (``parameters.extra``)."""
        return {"format": self.format, "precision": self.precision, "path": str(self.path), "sha256": self.sha256,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "example": self.example, "task": self.task, "labels": list(self.labels)}


def _version(source: dict) -> str:
    sm = source.get("saved_model") or source.get("path") or ""
    tail = Path(str(sm)).name
    return tail if tail.isdigit() else DEFAULT_VERSION


def _served_tensors(art: mf.Artifact, source: dict, kind: str) -> tuple[TensorInfo, ...]:
    tensors = [TensorInfo.from_dict(t) for t in getattr(art, kind)]
    quant = (art.raw.get("quantization") or {}).get(kind) or {}
    if not quant:
        return tuple(tensors)
    # a quantized tensor is fed and read in its float form: the adapter (de)quantizes it
    src = {t["name"]: t for t in source.get(kind, [])}
    return tuple(TensorInfo(t.name, t.shape, src[t.name]["dtype"] if t.name in src else "float32")
                 if t.name in quant else t for t in tensors)


def plan(dirs: list[Path], format: str = "tflite", precisions: list[str] | None = None) -> list[ServedModel]:
    """Find, check and name the models to serve.

    Args:
        dirs: artifacts roots, example dirs or exports dirs.
        format: ``tflite`` or ``onnx`` (default ``tflite``).
        precisions: precisions to serve, first one under the bare example name (default None:
            ``["fp32"]``).

    Returns:
        The models, in the order found.

    Raises:
        UsageError: unknown format or precision, or two models would get the same name.
        InputError: no manifest, an example lacks the asked variant, a file is missing.
        IntegrityError: a file does not match its manifest sha256.
    """
    if format not in SERVE_FORMATS:
        raise UsageError("format cannot be served", got=format, expected=" or ".join(SERVE_FORMATS))
    from edgekit.core.formats import SPECS

    precisions = list(precisions or ["fp32"])
    valid = [str(p) for p in SPECS[format].precisions]
    bad = [p for p in precisions if p not in valid]
    if bad or len(set(precisions)) != len(precisions):
        raise UsageError(f"invalid --precisions for {format}", got=",".join(precisions),
                         expected=f"distinct names from {','.join(valid)}")
    if not dirs:
        raise UsageError("no directory to serve", expected="one or more artifacts/example/exports dirs")
    manifests: list[Path] = []
    for d in dirs:
        manifests += [m for m in find_manifests(Path(d)) if m not in manifests]
    models: list[ServedModel] = []
    seen: dict[str, Path] = {}
    for path in manifests:
        man = mf.load(path)
        source = man.source
        base = source.get("example") or man.data.get("metadata", {}).get("name") or path.parent.parent.name
        for i, precision in enumerate(precisions):
            arts = [a for a in man.artifacts if a.format == format and a.precision == precision]
            if not arts:
                failed = [f.get("error", "") for f in man.failures
                          if f.get("format") == format and f.get("precision") == precision]
                why = f" (export failed: {failed[0][:200]})" if failed else ""
                raise InputError(f"{path} has no {format}/{precision} file{why}",
                                 got=sorted(f"{a.format}/{a.precision}" for a in man.artifacts),
                                 expected=f"edgekit export --formats {format} --precisions {precision}")
            art = arts[0]
            file = art.verify(man.root)  # sha256 against the manifest, before anything listens
            name = base if i == 0 else f"{base}-{precision}"
            if not _NAME_OK.match(name):
                raise InputError("example name cannot be a served model name", got=name,
                                 expected="letters, digits, '_', '.', '-'")
            if name in seen:
                raise UsageError("two exports would be served under the same name", got=f"{name}: {seen[name]} "
                                 f"and {path}", expected="one directory per example name")
            seen[name] = path
            models.append(ServedModel(
                name=name, version=_version(source), format=format, precision=precision, path=file,
                sha256=art.sha256, inputs=_served_tensors(art, source, "inputs"),
                outputs=_served_tensors(art, source, "outputs"), example=source.get("example"),
                task=source.get("task"), labels=tuple(str(x) for x in source.get("labels") or ())))
    return models

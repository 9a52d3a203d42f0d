"""Keras sources: a ``.keras`` file or a live ``keras.Model``, turned into the SavedModel the converters read.

Two steps, so that every refusal comes before anything is written:

1. :func:`prepare` loads the model under the TensorFlow backend (a ``.keras`` from any backend,
   ``safe_mode=True``, see :func:`edgekit.parity.keras_model.load_keras`), reads its input
   signature, applies ``--input-shape`` and refuses unknown non-batch dimensions (one line naming
   the input and the axis).
2. :func:`materialise`, inside the export's staging directory, writes ``source/model.keras`` (the
   file copied, or ``model.save`` for a live model) and ``source/saved_model``
   (``model.export(dir, format="tf_saved_model")``, the input signature fixed where
   ``--input-shape`` was given), then opens that SavedModel like any other
   (:func:`edgekit.export.source.open_saved_model`). The Keras model stays on the returned
   :class:`~edgekit.export.source.SourceModel` as the reference for the golden outputs.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.core.errors import InputError, UsageError
from edgekit.core.fsutil import sha256_file
from edgekit.core.text import one_line
from edgekit.parity import keras_model as km

SOURCE_DIR = "source"
KERAS_NAME = "model.keras"
SAVED_MODEL_NAME = "saved_model"


def parse_input_shapes(values) -> dict[str, tuple[int, ...]]:
    """``["ids=32", "image=96x96x3"]`` or ``{"ids": (32,)}`` -> ``{name: non-batch dims}``.

    Raises:
        UsageError: not ``NAME=D1xD2...`` with positive integer dims, or a name given twice.
    """
    if not values:
        return {}
    if isinstance(values, dict):
        items = [(str(k), tuple(v) if not isinstance(v, str) else v) for k, v in values.items()]
    else:
        items = []
        for text in values:
            name, sep, dims = str(text).partition("=")
            if not sep or not name.strip():
                raise UsageError("--input-shape must be NAME=D1xD2...", got=text, expected="e.g. image=96x96x3")
            items.append((name.strip(), dims))
    out: dict[str, tuple[int, ...]] = {}
    for name, dims in items:
        try:
            parsed = tuple(int(d) for d in (dims.lower().split("x") if isinstance(dims, str) else dims))
        except ValueError:
            raise UsageError("--input-shape dims must be integers joined by x", got=f"{name}={dims}",
                             expected="e.g. image=96x96x3 (the dims after the batch axis)") from None
        if not parsed or any(d < 1 for d in parsed):
            raise UsageError("--input-shape dims must be positive", got=f"{name}={dims}", expected="e.g. ids=128")
        if name in out:
            raise UsageError("--input-shape names an input twice", got=name, expected="one NAME=... per input")
        out[name] = parsed
    return out


@dataclass
class KerasPlan:
    """A loaded Keras model and the signature it will be exported with (nothing written yet).

    Attributes:
        kind: ``"keras"`` (a ``.keras`` file) or ``"live"`` (a model object).
        model: the Keras model (TensorFlow backend).
        path: the ``.keras`` file, or None for a live model.
        inputs: ``[{"name", "shape", "dtype"}]`` after ``--input-shape`` (batch axis None).
        fixed: ``{input name: dims}`` given with ``--input-shape``.
        signature: the ``input_signature`` for ``model.export`` (None: the model's own).
    """

    kind: str
    model: Any = field(repr=False)
    path: Path | None
    inputs: list
    fixed: dict
    signature: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        if self.path is not None:
            return self.path.stem
        return str(getattr(self.model, "name", None) or "model")


def is_keras_model(obj: Any) -> bool:
    """True for a ``keras.Model`` instance (checked without importing Keras when it is not loaded)."""
    import sys

    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def prepare(kind: str, model_or_path: Any, input_shapes: dict | None = None, unsafe: bool = False) -> KerasPlan:
    """Load (or take) the Keras model and fix its input signature; writes nothing.

    Raises:
        InputError: the file is refused or cannot be loaded; an input has an unknown non-batch
            dimension and ``input_shapes`` does not fix it; ``input_shapes`` disagrees with the model.
        UsageError: ``input_shapes`` names an unknown input; Keras runs on another backend here.
    """
    if kind == "live":
        keras = km.keras_module()
        model, path = model_or_path, None
        if not getattr(model, "built", False):
            raise InputError("the Keras model is not built", got=getattr(model, "name", type(model).__name__),
                             expected="a model with keras.Input, or one called once on data")
        del keras
    else:
        path = Path(model_or_path)
        model = km.load_keras(path, unsafe=unsafe)
    inputs = km.input_specs(model)
    shapes = dict(input_shapes or {})
    unknown_names = sorted(set(shapes) - {i["name"] for i in inputs})
    if unknown_names:
        raise UsageError("--input-shape names an input the model does not have", got=unknown_names,
                         expected=[i["name"] for i in inputs])
    fixed = {}
    for info in inputs:
        dims = shapes.get(info["name"])
        if dims is not None:
            have = info["shape"][1:]
            if len(dims) != len(have) or any(h is not None and h != d for h, d in zip(have, dims, strict=True)):
                raise InputError(f"--input-shape does not fit input {info['name']!r}",
                                 got="x".join(map(str, dims)),
                                 expected="x".join("?" if h is None else str(h) for h in have) +
                                 " (the dims after the batch axis; ? = free)")
            info["shape"] = [None, *dims]
            fixed[info["name"]] = list(dims)
        for axis, d in enumerate(info["shape"]):
            if axis and d is None:
                raise InputError(f"input {info['name']!r} has an unknown size on axis {axis}",
                                 got=f"shape {info['shape']}",
                                 expected=f"--input-shape {info['name']}=" +
                                 "x".join("N" if x is None else str(x) for x in info["shape"][1:]) +
                                 " (fix the free dims; golden inputs and some formats need them)")
    plan = KerasPlan(kind, model, path, inputs, fixed)
    if fixed:
        plan.signature = _signature(model, {i["name"]: i for i in inputs})
    return plan


def _signature(model, infos: dict[str, dict]):
    import tensorflow as tf
    from keras import tree
    from keras.src.export.export_utils import get_input_signature  # pinned Keras 3.15

    def spec(s):
        info = infos[str(s.name)]
        return tf.TensorSpec(info["shape"], tf.as_dtype(info["dtype"]), name=info["name"])

    return tree.map_structure(spec, get_input_signature(model))


@contextlib.contextmanager
def _quiet_fd2():
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def materialise(plan: KerasPlan, stage: Path):
    """Write ``source/model.keras`` and ``source/saved_model`` under ``stage`` and open the SavedModel.

    Returns:
        A :class:`~edgekit.export.source.SourceModel` with ``kind``, ``keras_path`` and
        ``keras_model`` set.

    Raises:
        InputError: Keras cannot export the model to a SavedModel (the message has Keras' reason).
    """
    from edgekit.export import source as source_mod

    d = Path(stage) / SOURCE_DIR
    d.mkdir(parents=True, exist_ok=True)
    keras_path: Path | None = d / KERAS_NAME
    keras_note = None
    if plan.path is not None:
        shutil.copyfile(plan.path, keras_path)
    else:
        try:
            plan.model.save(keras_path)
        except Exception as exc:  # noqa: BLE001 - an unserializable custom object: export still works
            keras_note = f"model.save failed: {one_line(exc, 200)}"
            if keras_path.exists():
                keras_path.unlink()
            keras_path = None
    sm_dir = d / SAVED_MODEL_NAME
    try:
        with _quiet_fd2():
            plan.model.export(str(sm_dir), format="tf_saved_model", verbose=False,
                              **({"input_signature": plan.signature} if plan.signature is not None else {}))
    except Exception as exc:  # Keras raises many types when it cannot trace a model
        raise InputError("Keras cannot export the model to a SavedModel", got=one_line(exc, 300),
                         expected="a model model.export(dir, format='tf_saved_model') accepts") from exc
    src = source_mod.open_saved_model(sm_dir, path=plan.path or Path(plan.name), example_dir=None, example=None)
    src.kind = plan.kind
    src.keras_path = keras_path
    src.keras_model = plan.model
    src.fixed_shapes = dict(plan.fixed)
    src.keras_note = keras_note
    src.source_fingerprint = sha256_file(plan.path) if plan.path is not None else None
    src.display_name = plan.name
    by_name = {i["name"]: i for i in plan.inputs}
    mismatch = [n for n in src.input_names if n not in by_name]
    if mismatch:
        raise InputError("the SavedModel's inputs are not named like the Keras model's", got=src.input_names,
                         expected=list(by_name))
    return src

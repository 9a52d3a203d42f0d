"""SOURCE for an export: a ``.keras`` file, a live ``keras.Model``, an ``artifacts/<example>``
directory or any SavedModel directory.

:func:`classify` does the cheap checks (no TensorFlow) and says which kind SOURCE is;
:func:`open_source` loads a SavedModel directory ONCE (one ``tf.saved_model.load``, kept alive
on the returned :class:`SourceModel` for the whole run: converters given only the concrete
function fail with "Called a function referencing variables which have been deleted") and
validates its serving signature. Keras sources are turned into a SavedModel inside the export
directory by :mod:`edgekit.export.keras_source`. :func:`load_calibration` reads and checks
representative data. Inputs may be float, integer or bool, mixed within one model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.core.errors import InputError
from edgekit.core.fsutil import sha256_tree
from edgekit.core.text import one_line
from edgekit.export.base import tensor_info

SOURCE_EXPECTED = ("a .keras file, a keras.Model (Python API), an artifacts/<example> directory "
                   "(with saved_model/1 and example.json) or a SavedModel directory")
#: input dtypes the converters and runtimes are given (others, e.g. strings, are refused)
INPUT_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "bool")
KINDS = ("example", "savedmodel", "keras", "live")


@dataclass
class SourceSpec:
    """What SOURCE is, found without TensorFlow.

    Attributes:
        kind: ``"example"``, ``"savedmodel"``, ``"keras"`` (a ``.keras`` file) or ``"live"``.
        path: SOURCE as given (None for a live model).
        saved_model_dir: the SavedModel (example and savedmodel kinds; None for Keras sources,
            whose SavedModel is written into the export directory).
        example_dir: the example directory, or None.
        model: the live model (``live`` kind only).
    """

    kind: str
    path: Path | None
    saved_model_dir: Path | None = None
    example_dir: Path | None = None
    model: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        if self.kind == "live":
            return str(getattr(self.model, "name", None) or "model")
        if self.example_dir is not None:
            return self.example_dir.name
        assert self.path is not None  # noqa: S101 - every other kind has a path
        if self.kind == "keras":
            return self.path.stem
        sm = self.saved_model_dir or self.path
        return sm.name if sm.name not in ("1", "") else sm.parent.name

    @property
    def display(self) -> str:
        """SOURCE for messages and the manifest (a live model: ``<keras.Model 'name'>``)."""
        return f"<keras.Model {self.name!r}>" if self.kind == "live" else str(self.path)


def _is_saved_model(d: Path) -> bool:
    return d.is_dir() and ((d / "saved_model.pb").is_file() or (d / "saved_model.pbtxt").is_file())


def resolve(path: Path) -> tuple[Path, Path | None]:
    """Return ``(saved_model_dir, example_dir or None)`` for SOURCE, without TensorFlow.

    A SavedModel at ``<example>/saved_model/1`` counts as that example.

    Raises:
        InputError: missing path, not a directory, or neither an example nor a SavedModel.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("SOURCE does not exist", got=str(path), expected=SOURCE_EXPECTED)
    if not path.is_dir():
        raise InputError("SOURCE is not a directory", got=str(path), expected=SOURCE_EXPECTED)
    if (path / "example.json").is_file():
        sm = path / "saved_model" / "1"
        if not _is_saved_model(sm):
            raise InputError("example directory has no SavedModel", got=f"{sm} (no saved_model.pb)",
                             expected="re-run edgekit train for this example")
        return sm, path
    if _is_saved_model(path):
        maybe = path.parent.parent
        if path.parent.name == "saved_model" and (maybe / "example.json").is_file():
            return path, maybe
        return path, None
    raise InputError("SOURCE is not a SavedModel or example directory",
                     got=f"{path} (no saved_model.pb, no example.json)", expected=SOURCE_EXPECTED)


def classify(source: Any) -> SourceSpec:
    """Say what SOURCE is, without TensorFlow: a live ``keras.Model``, a ``.keras`` file, or a directory.

    Raises:
        InputError: missing path, a file that is not ``.keras``, or a directory that is neither an
            example nor a SavedModel.
    """
    from edgekit.export.keras_source import is_keras_model

    if is_keras_model(source):
        return SourceSpec("live", None, model=source)
    if not isinstance(source, (str, Path)) and not hasattr(source, "__fspath__"):
        raise InputError("SOURCE is not a path or a keras.Model", got=type(source).__name__, expected=SOURCE_EXPECTED)
    path = Path(source)
    if path.is_file() or (path.suffix == ".keras" and not path.exists()):
        if path.suffix != ".keras":
            raise InputError("SOURCE is a file but not a .keras model", got=str(path), expected=SOURCE_EXPECTED)
        if not path.is_file():
            raise InputError("SOURCE does not exist", got=str(path), expected=SOURCE_EXPECTED)
        return SourceSpec("keras", path)
    sm, example = resolve(path)
    return SourceSpec("example" if example is not None else "savedmodel", path, sm, example)


def default_out(spec: SourceSpec | Path) -> Path:
    """Default export directory: ``<example>/exports``; ``<savedmodel>_exports`` or ``<stem>_exports``
    beside a SavedModel or a ``.keras`` file; ``./<model name>_exports`` for a live model."""
    if not isinstance(spec, SourceSpec):
        spec = classify(spec)
    if spec.kind == "example":
        assert spec.example_dir is not None  # noqa: S101
        return spec.example_dir / "exports"
    if spec.kind == "keras":
        assert spec.path is not None  # noqa: S101
        return spec.path.parent / f"{spec.path.stem}_exports"
    if spec.kind == "live":
        return Path.cwd() / f"{spec.name}_exports"
    sm = spec.saved_model_dir
    assert sm is not None  # noqa: S101
    return sm.parent / f"{sm.name}_exports"


@dataclass
class SourceModel:
    """A loaded, validated SavedModel and what is known about it.

    Attributes:
        path: SOURCE as given.
        saved_model_dir: the SavedModel directory.
        example_dir: the example directory, or None for a foreign SavedModel.
        example: ``example.json`` contents, or None.
        signature_key: the signature converted (``serving_default``, else the only one).
        inputs: TensorInfo dicts keyed by the signature's input names, in signature order.
        outputs: TensorInfo dicts in the function's flat output order (sorted names).
        input_tensors: input name -> graph tensor name (e.g. ``features:0``).
        output_tensors: output name -> graph tensor name (e.g. ``Identity:0``).
        fingerprint: sha256 of the SavedModel tree.
        loaded: the object ``tf.saved_model.load`` returned (kept alive on purpose).
        function: the signature's concrete function.
        cache: per-run intermediates shared between variants of one format.
        keras_path: the Keras model (``.keras``) the SavedModel was exported from, when there is
            one: ``<example>/model.keras`` for an example, the copy in the export directory for a
            ``.keras`` file or a live model; None for a bare SavedModel. Converters may load it
            (e.g. to re-trace a layer) with ``keras.saving.load_model(path, safe_mode=True)``.
        kind: one of :data:`KINDS` (default ``"savedmodel"``).
        keras_model: the Keras model itself, for Keras sources (the golden outputs' reference).
        fixed_shapes: ``{input name: dims}`` fixed with ``--input-shape`` (default empty).
        keras_note: why there is no ``keras_path`` for a live model (``model.save`` failed), or None.
        source_fingerprint: sha256 of the ``.keras`` file given, or None.
        display_name: the name of a Keras source (file stem or model name), or None.
    """

    path: Path
    saved_model_dir: Path
    example_dir: Path | None
    example: dict | None
    signature_key: str
    inputs: list
    outputs: list
    input_tensors: dict
    output_tensors: dict
    fingerprint: str
    loaded: Any = field(repr=False)
    function: Any = field(repr=False)
    cache: dict = field(default_factory=dict, repr=False)
    keras_path: Path | None = None
    kind: str = "savedmodel"
    keras_model: Any = field(default=None, repr=False)
    fixed_shapes: dict = field(default_factory=dict)
    keras_note: str | None = None
    source_fingerprint: str | None = None
    display_name: str | None = None

    @property
    def name(self) -> str:
        if self.display_name:
            return self.display_name
        if self.example and self.example.get("name"):
            return str(self.example["name"])
        return self.saved_model_dir.name if self.saved_model_dir.name not in ("1", "") else \
            self.saved_model_dir.parent.name

    @property
    def task(self) -> str | None:
        return (self.example or {}).get("task")

    @property
    def labels(self) -> list | None:
        return (self.example or {}).get("labels")

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.outputs]

    def predict(self, feeds: dict) -> dict:
        """Run the SavedModel signature on numpy inputs (each cast to its input's dtype);
        returns ``{output name: ndarray}``."""
        import tensorflow as tf

        dtypes = {i["name"]: tf.as_dtype(i["dtype"]) for i in self.inputs}
        out = self.function(**{k: tf.constant(v, dtypes.get(k, tf.float32)) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}


def open_source(path: Path) -> SourceModel:
    """Load and validate a SavedModel or example directory (imports TensorFlow).

    Raises:
        InputError: see :func:`resolve`; unloadable SavedModel; no serving signature;
            inputs of a dtype the formats cannot take (strings...); inputs whose non-batch
            dimensions are unknown; unreadable ``example.json``.
    """
    sm_dir, example_dir = resolve(path)
    example = None
    if example_dir is not None:
        try:
            example = json.loads((example_dir / "example.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError("example.json is unreadable", got=one_line(exc, 300),
                             expected="the JSON file edgekit train writes") from exc
    src = open_saved_model(sm_dir, path=Path(path), example_dir=example_dir, example=example)
    src.kind = "example" if example_dir is not None else "savedmodel"
    return src


def open_saved_model(sm_dir: Path, path: Path, example_dir: Path | None, example: dict | None) -> SourceModel:
    """Load one SavedModel directory and validate its serving signature (imports TensorFlow).

    Raises:
        InputError: see :func:`open_source`.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(sm_dir))
    except Exception as exc:  # TF raises many types for a corrupt or foreign directory
        raise InputError("cannot load SavedModel", got=f"{sm_dir}: {one_line(exc, 300)}",
                         expected="a TensorFlow 2 SavedModel") from exc
    sigs = dict(getattr(loaded, "signatures", {}) or {})
    if "serving_default" in sigs:
        key = "serving_default"
    elif len(sigs) == 1:
        key = next(iter(sigs))
    else:
        raise InputError("SavedModel has no serving signature", got=f"signatures: {sorted(sigs) or 'none'}",
                         expected="a 'serving_default' signature or exactly one (keras: model.export(dir))")
    fn = sigs[key]
    specs = tf.nest.flatten(fn.structured_input_signature)
    _, kw = fn.structured_input_signature
    names = sorted(kw)  # tf.nest flattens dicts in sorted key order: same order as fn.inputs
    if len(specs) != len(names) or not names:
        raise InputError("serving signature must take named tensor inputs",
                         got=str(fn.structured_input_signature), expected="keyword tensor inputs")
    inputs, input_tensors = [], {}
    for name, tensor in zip(names, fn.inputs[: len(names)], strict=True):
        spec = kw[name]
        if spec.dtype.name not in INPUT_DTYPES:
            raise InputError("SavedModel input has a dtype edgekit cannot export", got=f"{name}: {spec.dtype.name}",
                             expected=f"one of {', '.join(INPUT_DTYPES)}")
        if spec.shape.rank is None or spec.shape.rank < 1:
            raise InputError("SavedModel input has no batch axis", got=f"{name}: {spec.shape}",
                             expected="shape (batch, known dims...)")
        unknown = [ax for ax, d in enumerate(spec.shape) if ax and d is None]
        if unknown:
            raise InputError(f"SavedModel input {name!r} has an unknown size on axis {unknown[0]}",
                             got=f"{name}: {spec.shape}",
                             expected=f"known dims: export the .keras model with --input-shape {name}=D1xD2... "
                                      "(a SavedModel's signature is fixed)")
        inputs.append(tensor_info(name, [None, *spec.shape[1:]], spec.dtype.name))
        input_tensors[name] = tensor.name
    if not isinstance(fn.structured_outputs, dict) or not fn.structured_outputs:
        raise InputError("serving signature must return named outputs",
                         got=type(fn.structured_outputs).__name__, expected="a dict of tensors")
    out_names = sorted(fn.structured_outputs)
    outputs, output_tensors = [], {}
    for name, tensor in zip(out_names, fn.outputs, strict=True):
        spec = fn.structured_outputs[name]
        shape = [None] + list(spec.shape[1:]) if spec.shape.rank else []
        outputs.append(tensor_info(name, shape, spec.dtype.name))
        output_tensors[name] = tensor.name
    return SourceModel(path=Path(path), saved_model_dir=sm_dir, example_dir=example_dir, example=example,
                       signature_key=key, inputs=inputs, outputs=outputs, input_tensors=input_tensors,
                       output_tensors=output_tensors, fingerprint=sha256_tree(sm_dir),
                       loaded=loaded, function=fn,
                       keras_path=example_dir / "model.keras" if example_dir is not None
                       and (example_dir / "model.keras").is_file() else None)


def load_calibration(source: SourceModel | list, path: Path | None,
                     example_dir: Path | None = None) -> tuple[dict, str] | None:
    """Read representative inputs: ``path`` (.npz keyed by input name, or .npy for one
    input), else the example's ``calibration.npz``; None if there is neither.

    Args:
        source: the loaded source, or its inputs as TensorInfo dicts.
        path: the calibration file (default: the example's ``calibration.npz``).
        example_dir: the example directory when ``source`` is a list (default None).

    Returns:
        ``({input name: array (N, ...) in the input's dtype}, origin)`` or None.

    Raises:
        InputError: missing/unreadable file, wrong keys, wrong shape, empty or non-finite data.
    """
    import numpy as np

    if isinstance(source, SourceModel):
        infos, example_dir = source.inputs, source.example_dir
    else:
        infos = list(source)
    if path is None:
        if example_dir is None or not (example_dir / "calibration.npz").is_file():
            return None
        path = example_dir / "calibration.npz"
    path = Path(path)
    how = "an .npz keyed by input name (or an .npy for a single-input model)"
    if not path.is_file():
        raise InputError("calibration file does not exist", got=str(path), expected=how)
    if path.suffix not in (".npz", ".npy"):
        raise InputError("calibration file must be .npz or .npy", got=str(path), expected=how)
    names = [i["name"] for i in infos]
    try:
        if path.suffix == ".npy":
            if len(names) != 1:
                raise InputError("a .npy holds one array but the model has several inputs",
                                 got=f"{path} for inputs {names}", expected="an .npz keyed by input name")
            raw = {names[0]: np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputError("calibration file is unreadable", got=f"{path}: {one_line(exc, 300)}",
                         expected=how) from exc
    if len(names) == 1 and names[0] not in raw and len(raw) == 1:
        raw = {names[0]: next(iter(raw.values()))}
    missing = [n for n in names if n not in raw]
    if missing:
        raise InputError("calibration data lacks model inputs", got=f"{path} keys {sorted(raw)}",
                         expected=f"arrays named {names}")
    out = {}
    for info in infos:
        arr = raw[info["name"]]
        want = info["shape"]
        if arr.ndim != len(want) or any(w is not None and w != g
                                        for w, g in zip(want[1:], arr.shape[1:], strict=True)):
            dims = ", ".join(str(d) for d in want[1:])
            raise InputError("calibration data has the wrong shape", got=f"{info['name']}: {arr.shape}",
                             expected=f"(N, {dims})")
        if arr.shape[0] < 1 or arr.dtype.kind not in "fiub":
            raise InputError("calibration data is empty or not numeric",
                             got=f"{info['name']}: {arr.dtype} {arr.shape}", expected="N >= 1 numeric rows")
        out[info["name"]] = _as_input_dtype(arr, info)
    return out, str(path)


def _as_input_dtype(arr, info: dict):
    """``arr`` in the input's dtype: floats from any number; integers and bools only when every
    value survives the cast exactly (ids given as int64 for an int32 input are fine, 0.5 is not).

    Raises:
        InputError: NaN/Inf, or values the input's dtype cannot hold.
    """
    import numpy as np

    want = np.dtype(info["dtype"])
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError("calibration data holds NaN or Inf", got=info["name"], expected="finite values")
    if want.kind == "f":
        return np.ascontiguousarray(arr.astype(want))
    cast = arr.astype(want)
    if not np.array_equal(cast.astype(np.float64), arr.astype(np.float64)):
        raise InputError(f"calibration data for {want.name} input {info['name']!r} has values that type "
                         "cannot hold", got=f"{arr.dtype} in [{arr.min()}, {arr.max()}]",
                         expected=f"{want.name} values (ids, pixels, flags) without fractions or overflow")
    return np.ascontiguousarray(cast)

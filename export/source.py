"""SOURCE for an export: an ``artifacts/<example>`` directory or any SavedModel directory.

:func:`resolve` does the cheap checks (no TensorFlow); :func:`open_source` loads the
SavedModel ONCE (one ``tf.saved_model.load``, kept alive on the returned
:class:`SourceModel` for the whole run: converters given only the concrete function fail
with "Called a function referencing variables which have been deleted") and validates
its serving signature. :func:`load_calibration` reads and checks representative data.
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

SOURCE_EXPECTED = ("an artifacts/<example> directory (with saved_model/1 and example.json) "
                   "or a SavedModel directory")


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


def default_out(path: Path) -> Path:
    """Default export directory: ``<example>/exports``, else ``<savedmodel>_exports`` beside it."""
    sm, example = resolve(path)
    return example / "exports" if example is not None else sm.parent / f"{sm.name}_exports"


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

    @property
    def name(self) -> str:
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
        """Run the SavedModel signature on numpy inputs; returns ``{output name: ndarray}``."""
        import tensorflow as tf

        out = self.function(**{k: tf.constant(v, tf.float32) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}


def open_source(path: Path) -> SourceModel:
    """Load and validate SOURCE (imports TensorFlow).

    Raises:
        InputError: see :func:`resolve`; unloadable SavedModel; no serving signature;
            non-float32 inputs; inputs whose non-batch dimensions are unknown;
            unreadable ``example.json``.
    """
    sm_dir, example_dir = resolve(path)
    example = None
    if example_dir is not None:
        try:
            example = json.loads((example_dir / "example.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError("example.json is unreadable", got=one_line(exc, 300),
                             expected="the JSON file edgekit train writes") from exc
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
        if spec.dtype != tf.float32:
            raise InputError("SavedModel input is not float32", got=f"{name}: {spec.dtype.name}",
                             expected="float32 inputs only")
        if spec.shape.rank is None or spec.shape.rank < 1 or any(d is None for d in spec.shape[1:]):
            raise InputError("SavedModel input has unknown dimensions", got=f"{name}: {spec.shape}",
                             expected="shape (batch, known dims...)")
        inputs.append(tensor_info(name, [None, *spec.shape[1:]], "float32"))
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


def load_calibration(source: SourceModel, path: Path | None) -> tuple[dict, str] | None:
    """Read representative inputs: ``path`` (.npz keyed by input name, or .npy for one
    input), else the example's ``calibration.npz``; None if there is neither.

    Returns:
        ``({input name: float32 array (N, ...)}, origin)`` or None.

    Raises:
        InputError: missing/unreadable file, wrong keys, wrong shape, empty or non-finite data.
    """
    import numpy as np

    if path is None:
        if source.example_dir is None or not (source.example_dir / "calibration.npz").is_file():
            return None
        path = source.example_dir / "calibration.npz"
    path = Path(path)
    how = "an .npz keyed by input name (or an .npy for a single-input model)"
    if not path.is_file():
        raise InputError("calibration file does not exist", got=str(path), expected=how)
    if path.suffix not in (".npz", ".npy"):
        raise InputError("calibration file must be .npz or .npy", got=str(path), expected=how)
    names = source.input_names
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
    for info in source.inputs:
        arr = raw[info["name"]]
        want = info["shape"]
        if arr.ndim != len(want) or any(w is not None and w != g
                                        for w, g in zip(want[1:], arr.shape[1:], strict=True)):
            dims = ", ".join(str(d) for d in want[1:])
            raise InputError("calibration data has the wrong shape", got=f"{info['name']}: {arr.shape}",
                             expected=f"(N, {dims})")
        if arr.shape[0] < 1 or not np.issubdtype(arr.dtype, np.number):
            raise InputError("calibration data is empty or not numeric",
                             got=f"{info['name']}: {arr.dtype} {arr.shape}", expected="N >= 1 numeric rows")
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise InputError("calibration data holds NaN or Inf", got=info["name"], expected="finite values")
        out[info["name"]] = arr
    return out, str(path)

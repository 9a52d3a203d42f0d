"""The golden file of a Keras source: inputs (``--inputs`` or synthesised) and Keras' own outputs.

Written by the export into ``<out>/reference.npz`` (and described under the manifest's
``reference`` key) for a ``.keras`` file or a live model, so that verify — on this machine or on
a device without TensorFlow — compares every format with what Keras predicts, not with the
SavedModel the formats were converted from. edgekit's examples keep the ``reference.npz`` their
training wrote (real data); a bare SavedModel has no Keras model, and verify computes its golden
outputs with the SavedModel (:mod:`edgekit.parity.targets`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.core.errors import InputError
from edgekit.core.fsutil import sha256_file
from edgekit.parity import inputs as golden_inputs
from edgekit.parity import keras_model as km

REFERENCE_NAME = "reference.npz"


def golden_for(infos: list[dict], model, inputs_file: dict[str, np.ndarray] | None, inputs_path: Path | None,
               int_range: tuple[int, int] | None, calibration: tuple[dict, str] | None
               ) -> tuple[dict[str, np.ndarray] | None, dict[str, str], str | None]:
    """Choose the golden inputs of a Keras source.

    Returns:
        ``(arrays, {input name: origin}, None)``, or ``(None, {}, reason)`` when an integer input's
        range is unknown (verify then asks for ``--inputs`` or ``--int-range``; the export goes on).
    """
    if inputs_file is not None:
        return inputs_file, {n: f"file {inputs_path}" for n in inputs_file}, None
    stats, stats_origin = {}, ""
    if calibration is not None:
        stats, stats_origin = golden_inputs.float_stats(calibration[0]), str(calibration[1])
    try:
        arrays, origin = golden_inputs.synthesise(infos, int_ranges=km.integer_ranges(model), int_range=int_range,
                                                  stats=stats, stats_origin=stats_origin)
    except InputError as exc:
        return None, {}, str(exc)
    return arrays, origin, None


def write_reference(out_dir: Path, src, arrays: dict[str, np.ndarray], origin: dict[str, str]) -> dict:
    """Run Keras on ``arrays``, save inputs and outputs as ``out_dir/reference.npz``; return the
    manifest's ``reference`` entry.

    Raises:
        InputError: Keras' outputs do not match the SavedModel's (names or count).
    """
    import keras

    model = src.keras_model
    feeds = {n: arrays[n] for n in src.input_names}
    outputs = km.keras_outputs(model, feeds, km.output_names(model))
    if sorted(outputs) != sorted(src.output_names):
        raise InputError("the Keras model's outputs do not match its SavedModel's", got=sorted(outputs),
                         expected=src.output_names)
    path = Path(out_dir) / REFERENCE_NAME
    with open(path, "wb") as fh:
        np.savez(fh, **feeds, **outputs)
    rows = int(len(next(iter(feeds.values()))))
    return {"path": REFERENCE_NAME, "sha256": sha256_file(path), "rows": rows, "inputs_origin": origin,
            "outputs_from": f"keras {keras.__version__} model.predict ({keras.backend.backend()} backend)",
            "outputs": {n: {"dtype": str(a.dtype), "shape": [None, *a.shape[1:]]} for n, a in outputs.items()}}

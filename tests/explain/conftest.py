"""Fixtures of the explain tests: models with faults placed on purpose, exported once per test run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import explain_models as models  # noqa: E402


@pytest.fixture(scope="session")
def explain_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("explain")


def _export(src: Path, out: Path, formats, precisions, inputs: Path, calibration: Path | None = None) -> Path:
    import edgekit

    if not (out / "manifest.json").is_file():
        report = edgekit.export(str(src), out=str(out), formats=formats, precisions=precisions,
                                inputs=str(inputs), calibration=None if calibration is None else str(calibration))
        assert report, report
    return out


@pytest.fixture(scope="session")
def perturbed(explain_root):
    """Factory: ``perturbed(name, layer, formats) -> (export of the perturbed model, original model.keras)``.

    The export is of ``models.<name>()`` with ``layer``'s kernel moved (:func:`models.perturb`), fp32 only;
    its golden inputs are the model's own. TF.js files run in Node (tfjs cpu backend),
    Core ML files in the numpy reference evaluator.
    """

    def get(name: str, layer: str, formats=("tflite", "onnx", "tfjs", "coreml")):
        d = explain_root / name
        d.mkdir(exist_ok=True)
        original, inputs = d / "model.keras", d / "inputs.npz"
        if not original.is_file():
            model, golden = getattr(models, name)()
            model.save(original)
            np.savez(inputs, **golden)
        bad = d / f"perturbed_{layer}.keras"
        if not bad.is_file():
            from edgekit.parity.keras_model import load_keras

            models.perturb(load_keras(original), layer).save(bad)
        tag = "_".join(formats)
        return _export(bad, d / f"exp_{layer}_{tag}", list(formats), ["fp32"], inputs), original

    return get


@pytest.fixture(scope="session")
def saturating_export(explain_root):
    """The int8-saturating model (:func:`models.saturating`) exported to TFLite fp32 and int8."""
    d = explain_root / "saturating"
    d.mkdir(exist_ok=True)
    model, golden, calib = models.saturating()
    model.save(d / "model.keras")
    np.savez(d / "inputs.npz", **golden)
    np.savez(d / "calibration.npz", **calib)
    return _export(d / "model.keras", d / "exp", ["tflite"], ["fp32", "int8"], d / "inputs.npz",
                   d / "calibration.npz")

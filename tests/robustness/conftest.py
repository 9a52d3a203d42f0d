"""Robustness suite fixtures: one quick-trained regression example exported once per run.

``robust_example`` is a read-only ``regression_mlp`` example directory (copied from the
lead's ``quick_example``) holding ``exports/`` with every format in fp32 (TFLite, Core ML,
TF.js, ONNX), written by the real ``edgekit.export.api.export_model`` under a file lock so xdist
workers share it. ``fresh(tmp_path)`` gives a private, writable copy for a test to damage.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest

EXAMPLE = "regression_mlp"
FORMATS = ["tflite", "coreml", "tfjs", "onnx"]


@pytest.fixture(scope="session")
def robust_example(shared_dir, quick_example) -> Path:
    root = shared_dir / "robustness"
    root.mkdir(exist_ok=True)
    ex = root / EXAMPLE
    with open(shared_dir / "robustness.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (root / "DONE").exists():
                from edgekit.export.api import export_model

                if ex.exists():
                    shutil.rmtree(ex)
                shutil.copytree(quick_example(EXAMPLE), ex)
                report = export_model(ex, formats=FORMATS, precisions=["fp32"])
                if not all(r.ok for r in report.results):
                    raise RuntimeError(f"fixture export failed: {report.results}")
                (root / "DONE").write_text("ok")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return ex


@pytest.fixture
def fresh(robust_example, tmp_path):
    """``fresh() -> Path``: a writable copy of the exported example under ``tmp_path``."""

    def make(name: str = EXAMPLE) -> Path:
        dst = tmp_path / name
        shutil.copytree(robust_example, dst, symlinks=True)
        return dst

    return make

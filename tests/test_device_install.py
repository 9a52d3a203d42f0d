"""The base install is a working device runtime: numpy + edge runtimes, no TensorFlow (slow)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_base_install_verifies_without_tensorflow(tmp_path, quick_example):
    from edgekit.export.api import export_model

    art = tmp_path / "art"
    shutil.copytree(quick_example("moons_h3"), art / "moons_h3")
    export_model(art / "moons_h3", formats=["tflite", "onnx"])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-c", str(REPO / "constraints.txt"), str(REPO)], check=True, cwd=tmp_path)
    listed = subprocess.run([str(py), "-m", "pip", "list"], capture_output=True, text=True).stdout.lower()
    assert "tensorflow" not in listed and "keras" not in listed
    r = subprocess.run([str(py), "-m", "edgekit.runtime", "verify", str(art)], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 rows: 6 pass" in r.stdout

"""The scripts under examples/ run as written, against a quick-trained example."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_export_and_verify_example_runs(quick_example, tmp_path):
    src = tmp_path / "moons_h3"
    shutil.copytree(quick_example("moons_h3"), src)
    r = subprocess.run([sys.executable, str(REPO / "examples" / "export_and_verify.py"), str(src)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[:3] for ln in lines[:3]] == [["tflite", "fp32", "pass"], ["tflite", "fp16", "pass"],
                                                   ["tflite", "int8_dynamic", "pass"]]
    assert lines[-1].startswith("6 rows: 6 pass, 0 fail, 0 error")
    assert any(ln.startswith("tflite says [[") for ln in lines)

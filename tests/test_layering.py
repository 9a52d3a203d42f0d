"""Dependency direction: runtime/ and the CLI modules never import TensorFlow at module level."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules(pkg: str) -> list[str]:
    return [f"{pkg}.{m.name}" for m in pkgutil.iter_modules([str(REPO / pkg)])
            if not m.name.startswith("_")]


def _imports_heavy(modules: list[str]) -> str:
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(k for k in ('tensorflow', 'keras', 'tensorflowjs', 'tf2onnx') if k in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_runtime_never_imports_tensorflow_at_import_time():
    assert _imports_heavy(_modules("runtime")) == "[]"


def test_cli_modules_are_light():
    mods = [m for m in ("train.cli", "export.cli", "runtime.cli", "edgekit.web_cli", "bench.cli")
            if (REPO / (m.replace(".", "/") + ".py")).exists()]
    assert _imports_heavy(["edgekit.cli", *mods, "train.registry"]) == "[]"


def test_train_does_not_use_export_or_runtime():
    for f in (REPO / "train").glob("*.py"):
        text = f.read_text()
        assert "from export" not in text and "import export" not in text, f
        assert "from runtime" not in text and "import runtime" not in text, f

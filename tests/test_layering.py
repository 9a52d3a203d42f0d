"""Dependency direction: the import contract (import-linter) and what importing costs at run time."""

from __future__ import annotations

import importlib.util
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "tensorflowjs", "tf2onnx", "coremltools", "jax", "torch")


def _modules(pkg: str, folder: str) -> list[str]:
    return [f"{pkg}.{m.name}" for m in pkgutil.iter_modules([str(REPO / folder)]) if not m.name.startswith("_")]


def _imports_heavy(modules: list[str]) -> list[str]:
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(k for k in {HEAVY!r} if k in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return eval(r.stdout.strip())  # noqa: S307 - our own subprocess printed a list literal


LINT = [sys.executable, str(REPO / "scripts" / "lint_imports.py")]
needs_linter = pytest.mark.skipif(shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
                                  reason="import-linter is not installed (pip install 'edgekit[dev]')")


@needs_linter
def test_import_contract_holds():
    """import-linter: layers run one way; runtime, core and serve never import TensorFlow/Keras/converters."""
    r = subprocess.run(LINT, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 2 kept, 0 broken" in r.stdout, r.stdout


@needs_linter
def test_import_contract_can_fail(tmp_path, monkeypatch):
    """The contract is not vacuous: a runtime module importing parity and TensorFlow breaks both."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import lint_imports
    finally:
        sys.path.remove(str(REPO / "scripts"))
    lint_imports.stage(tmp_path)
    (tmp_path / "edgekit" / "runtime" / "probe.py").write_text(
        "from edgekit.parity import compare  # noqa: F401\nimport tensorflow  # noqa: F401\n")
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    r = subprocess.run([exe, "--no-cache", "--no-logo"], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)})
    assert r.returncode != 0 and "2 broken" in r.stdout, r.stdout


def test_importing_edgekit_and_its_api_is_light():
    code = ("import sys, edgekit\n"
            "edgekit.export, edgekit.verify, edgekit.load, edgekit.bench\n"
            f"print(sorted(k for k in {HEAVY!r} if k in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_runtime_and_cli_modules_are_light():
    runtime = _modules("edgekit.runtime", "runtime")
    cli = _modules("edgekit.cli", "edgekit/cli")
    assert runtime and cli
    # coremltools is the Core ML adapter's runtime: imported on load, never at import time
    assert _imports_heavy(["edgekit.cli", *cli, *runtime, "edgekit.train.registry",
                           "edgekit.export.registry"]) == []


@pytest.mark.skipif(importlib.util.find_spec("mlserver") is None,
                    reason="edgekit serve needs MLServer (edgekit[serve])")
def test_the_server_is_tensorflow_free():
    """``edgekit serve`` runs LiteRT and ONNX Runtime files: importing all of it loads no TensorFlow.
    (Checked in a child process: mlserver's gRPC protos clash with tritonclient's, which the serve
    tests import, so it is not imported here.)"""
    assert _imports_heavy(_modules("edgekit.serve", "serve")) == []


def test_one_top_level_package_in_the_source_tree():
    """Every package folder maps into `edgekit` (pyproject's package-dir); no other top-level name."""
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {p.split(".")[0] for p in cfg["packages"]} == {"edgekit"}
    for pkg, folder in cfg["package-dir"].items():
        assert (REPO / folder / "__init__.py").is_file(), (pkg, folder)

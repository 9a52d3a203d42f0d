"""Check the import contract (pyproject.toml's [tool.importlinter]) on the installed layout.

import-linter (grimp) reads a package from the file system under its top-level folder, but the
repository keeps its layer folders at the top (runtime/, parity/, ...) and maps them into
``edgekit`` with setuptools' package-dir. This script lays the ``.py`` files out as the wheel
does — into a temporary ``edgekit/`` tree, following pyproject's package-dir — and runs
``lint-imports`` there, so the contract is checked on exactly what gets installed.

    .venv/bin/python scripts/lint_imports.py [extra lint-imports options]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stage(dest: Path) -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg.get("package-dir", {})
    for pkg in cfg["packages"]:
        parent, _, leaf = pkg.rpartition(".")
        src = REPO / mapping[pkg] if pkg in mapping else REPO / mapping.get(parent, parent) / leaf
        target = dest.joinpath(*pkg.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            shutil.copy2(f, target / f.name)


def main(argv: list[str]) -> int:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        print("lint_imports: import-linter is not installed (pip install 'edgekit[dev]')", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgekit-lint-imports-") as td:
        stage(Path(td))
        shutil.copy2(REPO / "pyproject.toml", Path(td) / "pyproject.toml")
        env = {"PYTHONPATH": td, "PATH": str(exe.parent)}
        return subprocess.run([str(exe), "--no-cache", "--no-logo", *argv], cwd=td, env=env,
                              check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

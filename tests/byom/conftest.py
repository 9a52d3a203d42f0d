"""Fixtures of the bring-your-own-model tests: the .keras files of tests/byom/models.py, saved once
per test run into the run's shared directory (xdist workers reuse them)."""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import byom_models as models  # noqa: E402


class _Lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "w")  # noqa: SIM115
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


@pytest.fixture(scope="session")
def keras_file(shared_dir):
    """Factory: ``keras_file(name) -> (model.keras, inputs.npz)``, built at most once per run
    (``jax_mlp`` is trained on the JAX backend in a subprocess)."""
    root = shared_dir / "byom-models"

    def get(name: str) -> tuple[Path, Path]:
        with _Lock(shared_dir / f"byom-{name}.lock"):
            path, inputs = root / f"{name}.keras", root / f"{name}_inputs.npz"
            if not path.is_file():
                if name == "jax_mlp":
                    models.save_jax_model(root)
                else:
                    models.save(name, root)
        return path, inputs

    return get

"""Shared fixtures: quick-trained examples, built once per test run and shared across xdist workers."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tensorflowjs imports tensorflow_decision_forests, whose welcome banner imports IPython when
# stdout is not a terminal (pytest's capture) and fails: keep it quiet.
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A directory shared by every xdist worker of this run (the parent of the per-worker basetemp)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    d = root / "edgekit-shared"
    d.mkdir(exist_ok=True)
    return d


class _Lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "w")
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


@pytest.fixture(scope="session")
def quick_example(shared_dir):
    """Factory: ``quick_example(name) -> Path`` of a ``--quick``-trained example dir.

    Trained at most once per test run (file lock shared across workers). Read-only:
    copy it (``shutil.copytree``) before writing into it.
    """
    art = shared_dir / "quick-artifacts"

    def get(name: str) -> Path:
        d = art / name
        with _Lock(shared_dir / f"train-{name}.lock"):
            if not (d / "example.json").exists():
                from edgekit.train.registry import select
                from edgekit.train.runner import train_examples

                train_examples(select([name]), art, seed=0, quick=True, log=lambda *a, **k: None)
        return d

    return get

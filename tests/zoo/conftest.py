"""Zoo fixtures: each zoo model is built and exported ONCE per test run (file lock shared by xdist
workers), into the run's shared directory."""

from __future__ import annotations

import fcntl
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def zoo_export(shared_dir):
    """Factory: ``zoo_export(name) -> (model dir, export summary dict)``; the exports are in
    ``<model dir>/saved_model_exports`` and the golden file in ``<model dir>/reference.npz``."""
    import models

    def get(name: str):
        d = shared_dir / "zoo" / name
        done = d / "export.json"
        d.parent.mkdir(parents=True, exist_ok=True)
        with open(shared_dir / f"zoo-{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.is_file():
                from edgekit.export.api import export_model

                models.build(name, d)
                report = export_model(d / "saved_model", out=d / "saved_model_exports",
                                      calibration=d / "calibration.npz")
                done.write_text(json.dumps(report.to_dict(), default=str))
        return d, json.loads(done.read_text())

    return get

"""Export test fixtures: every test model is built and exported ONCE per test run.

The export (all formats, all precisions) lands in the run's shared directory under a file
lock, so xdist workers reuse one another's exports; the SavedModel's own predictions on
a few rows are stored next to it as the reference for the gross-mismatch checks.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from pathlib import Path

import _export_models as models
import numpy as np
import pytest
from _export_runtimes import HAVE_NODE, run_tfjs_many

ROWS = 6


class _Lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "w")  # noqa: SIM115
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


@dataclass
class Case:
    name: str
    source: Path
    saved_model: Path
    out: Path
    manifest: dict
    feeds: dict
    expected: dict

    def artifact(self, fmt: str, precision: str) -> dict | None:
        for a in self.manifest["artifacts"]:
            if a["format"] == fmt and a["precision"] == precision:
                return a
        return None


def _make(name: str, root: Path, quick_example) -> None:
    import tensorflow as tf

    from edgekit.export.api import export_model

    if name in models.QUICK:
        source = quick_example(name)
        saved_model = source / "saved_model" / "1"
        calibration = None  # the example's calibration.npz is the default
        with np.load(source / "reference.npz") as z:
            ex = json.loads((source / "example.json").read_text())
            feeds = {n: z[n][:ROWS].astype(np.float32) for n in ex["reference"]["inputs"]}
    else:
        saved_model, calibration = models.build(name, root / "model")
        source = saved_model
        with np.load(calibration) as z:
            feeds = {k: z[k][:ROWS].astype(np.float32) for k in z.files}
    report = export_model(source, out=root / "exports", calibration=calibration)
    fn = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    expected = {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in feeds.items()}).items()}
    np.savez(root / "reference.npz", **{f"in:{k}": v for k, v in feeds.items()},
             **{f"out:{k}": v for k, v in expected.items()})
    (root / "done.json").write_text(json.dumps({"source": str(source), "saved_model": str(saved_model),
                                                "seconds": report.seconds,
                                                "results": [r.status for r in report.results]}))


@pytest.fixture(scope="session")
def export_case(shared_dir, quick_example):
    """Factory: ``export_case(name) -> Case`` (exported once per run, shared across workers)."""
    cache: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name in cache:
            return cache[name]
        root = shared_dir / "export-tests" / name
        with _Lock(shared_dir / f"export-{name}.lock"):
            if not (root / "done.json").exists():
                root.mkdir(parents=True, exist_ok=True)
                _make(name, root, quick_example)
        done = json.loads((root / "done.json").read_text())
        with np.load(root / "reference.npz") as z:
            feeds = {k[3:]: z[k] for k in z.files if k.startswith("in:")}
            expected = {k[4:]: z[k] for k in z.files if k.startswith("out:")}
        manifest = json.loads((root / "exports" / "manifest.json").read_text())
        cache[name] = Case(name, Path(done["source"]), Path(done["saved_model"]), root / "exports",
                           manifest, feeds, expected)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def tfjs_results(export_case):
    """Factory: ``tfjs_results(name) -> {precision: (outputs, metadata, input names)}``, one Node
    process per model for all its TF.js variants."""
    if not HAVE_NODE:
        pytest.skip("TF.js check needs node and TF.js (edgekit setup-js)")
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            case = export_case(name)
            arts = [a for a in case.manifest["artifacts"] if a["format"] == "tfjs"]
            res = run_tfjs_many([(case.out / a["path"], case.feeds) for a in arts])
            cache[name] = {a["precision"]: r for a, r in zip(arts, res, strict=True)}
        return cache[name]

    return get

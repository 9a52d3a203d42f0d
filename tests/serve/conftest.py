"""Serve fixtures: two quick-trained examples exported once per run, and real ``edgekit serve`` processes.

``serve_artifacts`` is a read-only artifacts directory holding ``moons_h3`` (a classifier, 2
features) and ``regression_mlp`` (a regression, 10 features), copied from the lead's
``quick_example`` and exported to TFLite and ONNX (every precision) by the real
``edgekit.export.api.export_model`` under a file lock shared by xdist workers.

``ServeProcess`` starts ``python -m edgekit serve ...`` on free 127.0.0.1 ports in its own
process group, waits for ``/v2/health/ready`` and stops it (SIGTERM, then SIGKILL of its group
if it does not exit within 20 s): no server outlives the test session.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest
from _serve import EXAMPLES, FORMATS, ServeProcess


@pytest.fixture(scope="session")
def serve_artifacts(shared_dir, quick_example) -> Path:
    root = shared_dir / "serve-artifacts"
    with open(shared_dir / "serve.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (root / "DONE").exists():
                from edgekit.export.api import export_model

                if root.exists():
                    shutil.rmtree(root)
                root.mkdir()
                for name in EXAMPLES:
                    shutil.copytree(quick_example(name), root / name)
                    report = export_model(root / name, formats=FORMATS)
                    if not all(r.ok for r in report.results):
                        raise RuntimeError(f"fixture export failed: {report.results}")
                (root / "DONE").write_text("ok")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root


@pytest.fixture(scope="session")
def tflite_server(serve_artifacts):
    """``edgekit serve`` of both examples' TFLite fp32 (``NAME``) and int8 (``NAME-int8``) files."""
    with ServeProcess(str(serve_artifacts), "--precisions", "fp32,int8", "--max-batch-rows", "512") as srv:
        yield srv


@pytest.fixture(scope="session")
def onnx_server(serve_artifacts):
    """``edgekit serve --format onnx`` of both examples' ONNX fp32 files."""
    with ServeProcess(str(serve_artifacts), "--format", "onnx") as srv:
        yield srv

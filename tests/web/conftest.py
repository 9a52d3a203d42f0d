"""Fixtures for the web demo tests: TF.js example artifacts, a server, one Chromium per session."""

from __future__ import annotations

import fcntl
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from edgekit.web.browser import CHROMIUM, CHROMIUM_FLAGS, chromium_available

EXAMPLES = ("and_gate", "moons_h3", "regression_linear")

needs_chromium = pytest.mark.skipif(not chromium_available(), reason=f"needs {CHROMIUM} and playwright")


@pytest.fixture(scope="session")
def web_artifacts(shared_dir, quick_example) -> Path:
    """Read-only artifacts dir: and_gate, moons_h3, regression_linear with TF.js fp32/fp16 exports.

    Quick-trained examples (the lead's ``quick_example``) copied and exported with
    ``edgekit.export.api.export_model`` — the real pipeline. Built once per run (file lock shared by
    xdist workers).
    """
    out = shared_dir / "web-artifacts"
    with open(shared_dir / "web-artifacts.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if not all((out / n / "exports" / "manifest.json").is_file() for n in EXAMPLES):
            from edgekit.export.api import export_model

            for name in EXAMPLES:
                dest = out / name
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(quick_example(name), dest)
                report = export_model(dest, formats=["tfjs"], precisions=["fp32", "fp16"])
                if not report.ok:
                    raise RuntimeError(f"TF.js export of {name} failed: {report}")
    return out


@pytest.fixture(scope="session")
def fake_artifacts(tmp_path_factory) -> Path:
    """Artifacts dir for the server tests (no TensorFlow): two examples, a secret outside it."""
    root = tmp_path_factory.mktemp("served")
    (root / "secret.txt").write_text("outside the artifacts dir")
    art = root / "artifacts"
    for name in ("alpha", "beta"):
        d = art / name / "exports"
        d.mkdir(parents=True)
        (art / name / "example.json").write_text(json.dumps({"name": name, "task": "binary"}))
        (d / "manifest.json").write_text(json.dumps({"schema": "edgekit.manifest/1", "artifacts": [
            {"format": "tfjs", "precision": "fp32", "path": "tfjs/fp32", "size_bytes": 1}]}))
    (art / "alpha" / "escape.txt").symlink_to(root / "secret.txt")
    return art


@pytest.fixture(scope="session")
def server(web_artifacts):
    from edgekit.web.server import BackgroundServer

    with BackgroundServer(web_artifacts) as srv:
        yield srv


@pytest.fixture(scope="session")
def browser_context():
    """One headless Chromium (STACK.md flags, fresh profile dir) for the whole session."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="edgekit-test-chromium-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                    args=list(CHROMIUM_FLAGS))
        yield ctx
        ctx.close()


@pytest.fixture
def open_page(browser_context):
    """``open_page(url) -> (page, console_errors)``, waiting until the page finished loading."""
    pages = []

    def go(url: str):
        page = browser_context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("() => window.edgekit && ['ready', 'error'].includes(window.edgekit.status)",
                               timeout=60_000)
        pages.append(page)
        return page, errors

    yield go
    for p in pages:
        p.close()

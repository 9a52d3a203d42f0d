"""The wheel: one top-level package with its data files; installed outside the checkout it works.

The quick test builds the wheel and reads its file list. The slow one installs it into a fresh
venv in a temporary directory (exactly the lock, as `make setup` does), then runs export, verify
with TF.js rows (npm ci from the shipped lock into a fresh cache) and serve-web from there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_FILES = ("edgekit/web/static/index.html", "edgekit/web/static/app.js", "edgekit/web/static/style.css",
              "edgekit/runtime/tfjs_runner.cjs", "edgekit/runtime/tfjs_load.cjs",
              "edgekit/runtime/js/package.json", "edgekit/runtime/js/package-lock.json",
              "edgekit/bench/tfjs_raw.cjs", "edgekit/report/templates/report.html.j2", "edgekit/py.typed")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                        "-w", str(out), str(REPO)], capture_output=True, text=True, cwd=out)
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("edgekit-*.whl")
    return whl


def test_wheel_holds_one_top_level_package_and_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"edgekit"}, sorted(tops)
    for f in DATA_FILES:
        assert f in names, f
    for pkg in ("core", "cli", "runtime", "parity", "report", "web", "export", "bench", "train"):
        assert f"edgekit/{pkg}/__init__.py" in names, pkg
    (info,) = dist_info
    assert any(n.startswith(f"{info}/") and "LICENSE" in n for n in names)
    meta = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    from edgekit.core.version import __version__

    assert f"Version: {__version__}" in meta


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_installed_wheel_exports_verifies_and_serves(wheel, tmp_path, quick_example):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py, edgekit = venv / "bin" / "python", venv / "bin" / "edgekit"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*pip, "-r", str(REPO / "constraints.txt")], check=True, cwd=tmp_path)
    subprocess.run([*pip, str(wheel)], check=True, cwd=tmp_path)
    subprocess.run([str(py), "-m", "pip", "check"], check=True, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEKIT_", "PYTHON"))}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), KERAS_BACKEND="tensorflow")
    where = subprocess.run([str(py), "-c", "import edgekit, edgekit.runtime; print(edgekit.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout
    assert str(venv) in where and str(REPO) not in where
    art = tmp_path / "art"
    shutil.copytree(quick_example("moons_h3"), art / "moons_h3")

    def run(*args, timeout=900):
        r = subprocess.run([str(edgekit), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=timeout)
        assert r.returncode == 0, f"edgekit {' '.join(args)}: {r.stdout}\n{r.stderr}"
        return r.stdout

    run("export", str(art / "moons_h3"), "--formats", "tflite,onnx,tfjs")
    run("setup-js")
    assert (tmp_path / "cache" / "edgekit").is_dir()
    out = run("verify", str(art))
    rows = json.loads((art / "report.json").read_text())
    assert {r["format"] for r in rows} == {"tflite", "onnx", "tfjs"}
    assert any(r["runtime"].startswith("tfjs") and "wasm" in r["runtime"] for r in rows), out
    assert all(r["status"] == "pass" for r in rows), out
    port = _free_port()
    proc = subprocess.Popen([str(edgekit), "serve-web", "--artifacts", str(art), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/examples", timeout=2) as r:
                    examples = json.load(r)["examples"]
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("serve-web did not answer")
        assert [e["name"] for e in examples] == ["moons_h3"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"edgekit" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/vendor/tfjs/tf.min.js", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)

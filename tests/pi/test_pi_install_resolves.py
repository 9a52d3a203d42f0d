"""The device install resolves for a 64-bit Raspberry Pi (aarch64), for Python 3.11 and 3.13.

A full pip resolution (``pip install --dry-run --only-binary=:all:`` with the Pi's platform tags:
metadata only, nothing installed, no big wheel downloaded) of edgekit's base dependencies as
pyproject.toml lists them, so a dependency change that breaks Pi installs fails ``make test``.
Python 3.11 (bookworm, Raspberry Pi OS 12) resolves the lock (constraints.txt, what ``make
pi-check`` installs); 3.13 (trixie) resolves pyproject's ranges. Skipped, with the reason, when the
package registry cannot be reached.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pi_check import PLATFORMS

REPO = Path(__file__).resolve().parents[2]
NETWORK = re.compile(r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
                     r"Network is unreachable|ConnectTimeout|ReadTimeout|ProxyError|Could not fetch URL|"
                     r"Name or service not known", re.I)
#: the device runtimes that must come as aarch64 binary wheels
RUNTIMES = ("ai-edge-litert", "onnxruntime", "numpy")


def _base_dependencies() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def _resolve(python: str, tmp_path: Path, constraints: bool) -> dict[str, str]:
    """{normalised name: wheel file name} of a full aarch64 resolution for CPython ``python``."""
    report = tmp_path / f"report-{python}.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
           "--disable-pip-version-check", "--timeout", "20", "--retries", "1", "--target", str(tmp_path / "t"),
           "--only-binary=:all:", "--implementation", "cp", "--python-version", python, "--report", str(report)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    if constraints:
        cmd += ["-c", str(REPO / "constraints.txt")]
    r = subprocess.run([*cmd, *_base_dependencies()], capture_output=True, text=True, cwd=tmp_path)
    if r.returncode != 0 and NETWORK.search(r.stderr):
        pytest.skip(f"package registry unreachable: {NETWORK.search(r.stderr).group(0)}")
    err = "\n".join(ln for ln in r.stderr.splitlines() if "is ignored" not in ln)
    assert r.returncode == 0, f"aarch64 cp{python} device install does not resolve:\n{err}"
    doc = json.loads(report.read_text())
    return {re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["download_info"]["url"].rsplit("/", 1)[-1]
            for i in doc["install"]}


@pytest.mark.parametrize(("python", "constraints"), [("3.11", True), ("3.13", False)],
                         ids=["cp311-lock", "cp313-ranges"])
def test_device_install_resolves_for_aarch64(python, constraints, tmp_path):
    wheels = _resolve(python, tmp_path, constraints)
    tag = f"cp{python.replace('.', '')}"
    for name in RUNTIMES:
        assert name in wheels, f"{name} missing from the aarch64 resolution: {sorted(wheels)}"
        assert "aarch64" in wheels[name] and tag in wheels[name], wheels[name]
    for name, whl in wheels.items():  # every wheel is pure Python or built for aarch64
        assert whl.endswith("-none-any.whl") or "aarch64" in whl, f"{name}: {whl}"
    if constraints:  # the lock's versions: pi-check runs what the host's verify runs
        lock = dict(ln.split("==", 1) for ln in (REPO / "constraints.txt").read_text().splitlines() if "==" in ln)
        lock = {re.sub(r"[-_.]+", "-", k).lower(): v.strip() for k, v in lock.items()}
        for name in RUNTIMES:
            assert f"-{lock[name]}-" in wheels[name], (name, lock[name], wheels[name])

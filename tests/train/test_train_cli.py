"""``edgekit train`` bad input: one line, exit 2, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EDGEKIT = [sys.executable, "-m", "edgekit"]


def run(*args, cwd=None):
    return subprocess.run([*EDGEKIT, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_unknown_example_lists_valid_names(tmp_path):
    r = run("train", "nosuch", "--out", str(tmp_path / "a"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch" in lines[0] and "moons_h3" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "a").exists()


def test_out_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run("train", "and_gate", "--quick", "--out", str(f))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "not a directory" in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only directories")
def test_out_unwritable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    r = run("train", "and_gate", "--quick", "--out", str(ro))
    assert r.returncode == 2 and "writable" in r.stderr


def test_out_occupied_by_foreign_content(tmp_path):
    (tmp_path / "and_gate").mkdir()
    (tmp_path / "and_gate" / "precious.txt").write_text("mine")
    r = run("train", "and_gate", "--quick", "--out", str(tmp_path))
    assert r.returncode == 2 and "occupied" in r.stderr
    assert (tmp_path / "and_gate" / "precious.txt").read_text() == "mine"


def test_interrupted_run_leaves_no_example_dir(tmp_path):
    """Kill training mid-way: no half-written example dir appears under its final name."""
    p = subprocess.Popen([*EDGEKIT, "train", "moons_h50", "--out", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    # Wait until training has started (the temporary dir exists), then kill it.
    while time.time() < deadline and not any(Path(tmp_path).glob(".tmp-moons_h50-*")):
        time.sleep(0.2)
    p.kill()
    p.wait()
    assert not (tmp_path / "moons_h50").exists()


def test_help_is_fast_and_does_not_import_tensorflow():
    code = ("import sys, edgekit.cli as c; c.build_parser(); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False False", r.stderr

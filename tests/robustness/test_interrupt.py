"""An export killed mid-way (SIGKILL, no chance to clean up) leaves the previous valid export
untouched, or no manifest at all; a re-run completes and removes the dead run's staging dir.

The export runs in a real ``edgekit export`` process that is killed as soon as its staging
directory (``.tmp-exports-p<pid>-*``) holds a converted file, i.e. in the middle of the work.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
from _robust import EDGEKIT, ENV, REPO, snapshot

from edgekit.runtime import manifest as mf

FORMATS = "tflite,onnx,tfjs"


def _export_and_kill(ex) -> None:
    proc = subprocess.Popen([str(EDGEKIT), "export", str(ex), "--formats", FORMATS, "--precisions", "fp32"],
                            cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            staged = [p for d in ex.glob(".tmp-exports-*") for p in d.rglob("*") if p.is_file()]
            if staged:
                break
            if proc.poll() is not None:
                pytest.fail(f"export finished (exit {proc.returncode}) before it could be killed")
            time.sleep(0.02)
        else:
            pytest.fail("the export never staged a file")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()  # reaped: a zombie would still look alive to the stale-tmp cleaner
    assert proc.returncode == -signal.SIGKILL


def _rerun_and_check(ex) -> None:
    from edgekit.export.api import export_model
    from edgekit.parity.verify import load_target

    report = export_model(ex, formats=FORMATS.split(","), precisions=["fp32"])
    assert report.ok, report.results
    target = load_target(ex / "exports" / mf.MANIFEST_NAME)          # every sha256 checks out
    # the re-run replaced these three; a partial export keeps the fixture's other formats (Core ML)
    assert set(FORMATS.split(",")) <= {a.format for a, _ in target.artifacts}
    assert list(ex.glob(".tmp-*")) == [], "the dead run's staging dir was not cleaned"


def test_killed_export_keeps_previous_valid_export(fresh):
    from edgekit.parity.verify import load_target

    ex = fresh()
    before = snapshot(ex / "exports")
    _export_and_kill(ex)
    assert list(ex.glob(".tmp-exports-*")), "expected the killed run's staging dir"
    assert snapshot(ex / "exports") == before                      # byte for byte the previous export
    load_target(ex / "exports" / mf.MANIFEST_NAME)                  # and it still verifies
    _rerun_and_check(ex)


def test_killed_first_export_leaves_no_manifest(fresh):
    ex = fresh()
    shutil.rmtree(ex / "exports")
    _export_and_kill(ex)
    assert not (ex / "exports").exists()
    assert not list(ex.rglob(mf.MANIFEST_NAME)) or all(".tmp-" in str(p) for p in ex.rglob(mf.MANIFEST_NAME))
    _rerun_and_check(ex)


def test_rerun_removes_dead_runs_leftovers_and_spares_a_live_run(fresh):
    """A run killed between its two renames leaves the previous export as ``.tmp-old-exports-p<pid>-*``
    (and no ``exports/``); the next run removes that and dead staging dirs, but never the staging
    dir of a run that is still alive (its pid is in the name)."""
    from edgekit.export.api import export_model

    ex = fresh()
    dead = subprocess.Popen(["true"])
    dead.wait()
    shutil.move(ex / "exports", ex / f".tmp-old-exports-p{dead.pid}-abc")
    (ex / f".tmp-exports-p{dead.pid}-def").mkdir()
    live = ex / f".tmp-exports-p{os.getpid()}-ghi"
    live.mkdir()
    (live / "half-written.tflite").write_bytes(b"\0" * 10)
    report = export_model(ex, formats=["tflite"], precisions=["fp32"])
    assert report.ok
    assert sorted(p.name for p in ex.glob(".tmp-*")) == [live.name]
    assert (live / "half-written.tflite").is_file()
    mf.load(ex / "exports")

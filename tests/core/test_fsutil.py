"""Atomic writes and stale-temp cleaning."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgekit.core.fsutil import atomic_dir, atomic_file, clean_stale_tmp


def test_atomic_dir_replaces_only_on_success(tmp_path):
    final = tmp_path / "ex"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("boom")
    assert (final / "a").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["ex"]


def test_atomic_file_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(ValueError):
        with atomic_file(tmp_path / "f.json") as tmp:
            tmp.write_text("{")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_clean_stale_tmp_spares_live_runs(tmp_path):
    """A concurrent run's temporary dir (live pid) survives; a dead run's is removed."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    with atomic_dir(tmp_path / "live") as live_tmp:
        stale = tmp_path / f".tmp-old-p{dead}-xyz"
        stale.mkdir()
        clean_stale_tmp(tmp_path)
        assert live_tmp.exists()
        assert not stale.exists()

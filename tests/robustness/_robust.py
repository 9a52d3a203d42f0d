"""Helpers of the robustness suite: subprocess CLI runs, tree snapshots, one-line error checks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EDGEKIT = Path(sys.executable).with_name("edgekit")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore",
       "TFDF_DISABLE_WELCOME_MESSAGE": "1"}


def run_cli(argv: list, runtime: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``.venv/bin/edgekit ARGV`` (or ``python -m edgekit.runtime ARGV``) in a real process."""
    cmd = [sys.executable, "-m", "edgekit.runtime"] if runtime else [str(EDGEKIT)]
    return subprocess.run([*cmd, *map(str, argv)], capture_output=True, text=True, cwd=REPO, env=ENV,
                          timeout=timeout)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind and content digest: equal snapshots = nothing
    written (no new, removed or changed file, no leftover temporary).

    Contents, not mtimes: coremltools' ``ModelPackage`` rewrites an ``.mlpackage``'s
    ``Manifest.json`` with identical bytes whenever it opens one (even read-only use).
    """
    root = Path(root)
    snap = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            snap[p.relative_to(root).as_posix()] = ("link", str(p.readlink()))
        elif p.is_dir():
            snap[p.relative_to(root).as_posix()] = ("dir",)
        else:
            snap[p.relative_to(root).as_posix()] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
    return snap


def diff_snapshots(before: dict, after: dict) -> list[str]:
    """Human-readable differences between two snapshots (empty list: nothing changed)."""
    out = [f"new: {k}" for k in sorted(set(after) - set(before))]
    out += [f"removed: {k}" for k in sorted(set(before) - set(after))]
    out += [f"changed: {k}" for k in sorted(set(before) & set(after)) if before[k] != after[k]]
    return out


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str,
                          prefix: str = "edgekit: error:") -> str:
    """The process exited with ``code`` and printed exactly one error line holding every needle."""
    err_lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    assert len(err_lines) == 1, proc.stderr[-3000:]
    line = err_lines[0]
    assert line.startswith(prefix), line
    for n in needles:
        assert n in line, f"{n!r} not in {line!r}"
    return line


def assert_one_line_exc(exc: BaseException, *needles: str) -> str:
    """An EdgekitError's message is one line holding every needle."""
    msg = str(exc)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg

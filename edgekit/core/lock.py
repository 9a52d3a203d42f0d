"""One edgekit run at a time per export directory: a lock file beside it holding the owner.

``export`` and ``verify`` take :func:`run_lock` on ``<export dir>.lock`` (a sibling of the
directory, so ``export --clean`` can replace the directory as a whole). The lock is an
``fcntl.flock`` on that file: the kernel drops it when its process dies, so the lock of a
killed run (its pid dead, the file left behind) is simply taken over by the next run. The
file holds the owner's pid, host and start time, for the message a waiting run prints.

A second run waits (default :data:`DEFAULT_WAIT` seconds, or ``$EDGEKIT_LOCK_WAIT``) and then
refuses with one line (:class:`~edgekit.core.errors.OutputError`, exit 2) naming the owner.
Where ``fcntl`` does not exist (not POSIX) no lock is taken.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from edgekit.core.errors import OutputError, UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows): runs are not serialised there
    fcntl = None  # type: ignore[assignment]

#: seconds a run waits for another run's lock before refusing (``$EDGEKIT_LOCK_WAIT`` overrides).
DEFAULT_WAIT = 60.0
LOCK_SUFFIX = ".lock"
_POLL = 0.1


def lock_path(directory: Path) -> Path:
    """``<directory>.lock``: the lock file of an export directory (beside it, not inside)."""
    directory = Path(directory)
    return directory.with_name(directory.name + LOCK_SUFFIX)


def default_wait() -> float:
    """The wait in seconds: ``$EDGEKIT_LOCK_WAIT`` if set, else :data:`DEFAULT_WAIT`.

    Raises:
        UsageError: ``$EDGEKIT_LOCK_WAIT`` is not a number >= 0.
    """
    raw = os.environ.get("EDGEKIT_LOCK_WAIT")
    if raw is None or raw == "":
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UsageError("EDGEKIT_LOCK_WAIT must be a number of seconds >= 0", got=raw, expected="e.g. 60")
    return value


def read_owner(path: Path) -> dict:
    """The owner recorded in a lock file (``{"pid", "host", "started", "command"}``), or {}."""
    try:
        data = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(owner: dict) -> str:
    if not owner:
        return "another edgekit run"
    return (f"{owner.get('command') or 'edgekit'} pid {owner.get('pid')} on {owner.get('host')} "
            f"since {owner.get('started')}")


def _acquire(path: Path, wait: float, command: str, required: bool = True) -> int | None:
    """Open and flock ``path`` (waiting up to ``wait`` s); write the owner; return the fd
    (None: the file cannot be created and ``required`` is False)."""
    deadline = time.monotonic() + wait
    while True:
        try:  # held open while waiting: the waiter shows in /proc/<pid>/fd
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if not required:
                return None
            raise OutputError("cannot create the run lock file", got=f"{path} ({exc.strerror})",
                              expected="a writable location") from exc
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise OutputError(f"export directory {path.with_name(path.name[:-len(LOCK_SUFFIX)])} is in "
                                      f"use by {_describe(read_owner(path))}",
                                      got=f"still locked after {wait:g} s ({path})",
                                      expected="one run at a time: wait for it to finish (EDGEKIT_LOCK_WAIT=SECONDS "
                                               "waits longer)") from None
                time.sleep(_POLL)
        # the holder before us unlinks the file when it is done: lock the file that is there now
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "command": command}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(owner) + "\n").encode())
        return fd


def _release(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)  # unlinked while still locked: a waiter re-checks the inode and retries
    os.close(fd)


@contextlib.contextmanager
def run_lock(directories: Path | Sequence[Path], wait: float | None = None,
             command: str = "edgekit", required: bool = True) -> Iterator[list[Path]]:
    """Hold the run lock of each directory for the block (acquired in sorted order: no deadlock).

    Args:
        directories: an export directory or several (``verify`` of an artifacts root).
        wait: seconds to wait for another run (default None: :func:`default_wait`).
        command: what this run is, recorded in the lock file (default ``"edgekit"``).
        required: refuse when a lock file cannot be created (default True); False skips that
            directory (``verify`` of a read-only export writing its report elsewhere).

    Yields:
        The lock files held.

    Raises:
        OutputError: another run still holds a lock after ``wait`` seconds (one line naming it).
    """
    dirs = [Path(directories)] if isinstance(directories, (str, os.PathLike)) else [Path(d) for d in directories]
    paths = sorted({lock_path(d.resolve()) for d in dirs})
    wait = default_wait() if wait is None else float(wait)
    if fcntl is None:  # pragma: no cover
        yield []
        return
    held: list[tuple[Path, int]] = []
    try:
        for p in paths:
            fd = _acquire(p, wait, command, required)
            if fd is not None:
                held.append((p, fd))
        yield [p for p, _ in held]
    finally:
        for p, fd in reversed(held):
            _release(p, fd)

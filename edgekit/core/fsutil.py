"""Atomic writes: build in a temporary sibling, rename on success.

Nothing half-written is ever left under a final name: a killed process leaves
at most a ``.tmp-*`` sibling, which the next run ignores and cleans up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from edgekit.core.errors import OutputError

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and check it can be written.

    Raises:
        OutputError: if the path exists and is not a directory, or cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError("output path is not a directory", got=str(path), expected="a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError("cannot create output directory", got=f"{path} ({exc.strerror})",
                          expected="a writable location") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError("output directory is not writable", got=str(path),
                          expected="a directory you can write to")
    return path


def _owner_alive(entry: Path) -> bool:
    """True if the process whose pid is embedded in a ``.tmp-<name>-<pid>-...`` name still runs."""
    for part in entry.name[len(TMP_PREFIX):].split("-"):
        if part.startswith("p") and part[1:].isdigit():
            try:
                os.kill(int(part[1:]), 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
    return False


def clean_stale_tmp(parent: Path) -> None:
    """Remove leftovers of interrupted runs (``.tmp-*`` entries) in ``parent``.

    Entries belonging to a process that is still running (its pid is part of the
    name) are left alone: two runs may share an output directory.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return
    for entry in parent.glob(TMP_PREFIX + "*"):
        if _owner_alive(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


@contextlib.contextmanager
def atomic_dir(final: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``final`` only if the block succeeds.

    Args:
        final: the directory to produce.
        overwrite: replace an existing ``final`` (default True); if False an existing
            non-empty ``final`` raises :class:`OutputError`.
    """
    final = Path(final)
    parent = ensure_writable_dir(final.parent)
    if final.exists() and not overwrite and any(final.iterdir()):
        raise OutputError("output directory is occupied", got=str(final),
                          expected="an empty or new directory (or pass --force)")
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-p{os.getpid()}-", dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the finished dir gets the usual permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-{final.name}-p{os.getpid()}-", dir=parent))
        old.rmdir()
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: Path, mode: str = "w") -> Iterator[Path]:
    """Yield a temporary path in the same directory; rename it over ``final`` on success."""
    final = Path(final)
    parent = ensure_writable_dir(final.parent)
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{final.name}-p{os.getpid()}-", dir=parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual permissions
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=json_default) + "\n")


def strict_json(value):
    """``value`` with NaN/Inf floats replaced by None (recursively), so the JSON stays strict."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def json_default(obj: object) -> object:
    """``json.dumps(default=...)`` for numpy scalars and arrays and paths."""
    import numpy as np  # numpy is a base dependency

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Return a sha256 over a file or a directory tree (relative names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        h.update(sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def tree_size(path: Path) -> int:
    """Size in bytes of a file or of every file under a directory."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

"""Path confinement: one rule for every place that resolves a relative path from a file or a URL."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class PathEscape(ValueError):
    """A relative path that would leave its root; ``reason`` says how."""

    def __init__(self, rel: str, reason: str, resolved: Path | None = None):
        super().__init__(f"{rel!r}: {reason}")
        self.rel, self.reason, self.resolved = rel, reason, resolved


def confine(root: Path, rel: str, allow_empty: bool = False) -> Path:
    """Resolve ``rel`` (``/``-separated) under ``root`` or raise :class:`PathEscape`.

    Refused: an empty path (unless ``allow_empty``: then ``root`` itself), an absolute path or
    drive, NUL bytes and backslashes, ``..`` segments, and a path that resolves outside
    ``root`` after following symlinks.
    """
    if not rel:
        if allow_empty:
            return Path(root).resolve()
        raise PathEscape(rel, "empty path")
    if "\x00" in rel or "\\" in rel:
        raise PathEscape(rel, "NUL byte or backslash")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("/") or ":" in p.parts[0]:
        raise PathEscape(rel, "absolute path")
    if any(part == ".." for part in p.parts):
        raise PathEscape(rel, "'..' segment")
    root_real = Path(root).resolve()
    parts = [s for s in p.parts if s not in ("", ".")]
    full = root_real.joinpath(*parts).resolve() if parts else root_real
    if full != root_real and root_real not in full.parents:
        raise PathEscape(rel, "resolves outside the root (symlink?)", full)
    return full

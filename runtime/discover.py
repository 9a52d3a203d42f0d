"""Finding export manifests on disk: what ``verify``, ``serve`` and ``report`` accept as a DIR.

Here, at the bottom layer, so that every tool — the TensorFlow-free server included — finds
exports the same way without importing the parity layer (whose reference runners need TensorFlow).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.core.errors import InputError
from edgekit.runtime.manifest import MANIFEST_NAME


def find_manifests(path: Path) -> list[Path]:
    """Export manifests under ``path`` (an artifacts root, an example dir or an exports dir).

    Raises:
        InputError: ``path`` does not exist or holds no manifest.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError("directory not found", got=str(path),
                         expected="an artifacts dir, an example dir or an exports dir")
    for cand in (path / MANIFEST_NAME, path / "exports" / MANIFEST_NAME):
        if cand.is_file():
            return [cand]
    found = []
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for cand in (child / "exports" / MANIFEST_NAME, child / MANIFEST_NAME):
            if cand.is_file():
                found.append(cand)
                break
    if not found:
        raise InputError("no export manifest found", got=str(path),
                         expected="exports/manifest.json under it (run edgekit export first)")
    return found

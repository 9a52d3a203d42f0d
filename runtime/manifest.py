"""The export manifest (``exports/manifest.json``): schema, reading, integrity and path checks.

Written by ``export`` (last, atomically) and read by ``runtime`` before any file is
loaded. Paths are POSIX, relative to the manifest's directory and must stay inside
it; each entry's sha256 covers a file, or a directory tree (relative names and
file digests, sorted: see :func:`edgekit.core.fsutil.sha256_tree`).

Schema ``edgekit.manifest/1``::

    {"schema": "edgekit.manifest/1", "edgekit_version": str, "created": iso8601,
     "source": {"path": str, "fingerprint": str, "example": str|null, "task": str|null,
                "signature": "serving_default", "inputs": [TensorInfo], "outputs": [TensorInfo]},
     "metadata": {str: str},
     "artifacts": [{"format", "precision", "path", "size_bytes", "sha256",
                    "inputs": [TensorInfo], "outputs": [TensorInfo],
                    "quantization": dict|null, "converter": str, "converter_version": str,
                    "seconds": float}],
     "failures": [{"format", "precision", "error"}]}

    TensorInfo = {"name": str, "shape": [int|null, ...], "dtype": str}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgekit.core.errors import InputError, IntegrityError
from edgekit.core.fsutil import sha256_tree, write_json
from edgekit.core.paths import PathEscape, confine

SCHEMA = "edgekit.manifest/1"
MANIFEST_NAME = "manifest.json"
ARTIFACT_KEYS = ("format", "precision", "path", "size_bytes", "sha256", "inputs", "outputs")


def confined(root: Path, rel: str) -> Path:
    """Resolve ``rel`` under ``root``, refusing absolute paths, ``..`` and symlink escapes
    (:func:`edgekit.core.paths.confine`).

    Raises:
        InputError: if the path would leave ``root``.
    """
    try:
        return confine(root, rel)
    except PathEscape as exc:
        if exc.reason == "'..' segment":
            raise InputError("manifest path escapes the manifest's directory", got=rel,
                             expected="a relative path without '..'") from None
        if exc.resolved is not None:
            raise InputError("manifest path resolves outside the manifest's directory (symlink?)",
                             got=f"{rel} -> {exc.resolved}", expected=f"a path inside {Path(root).resolve()}") from None
        raise InputError(f"manifest path must be relative to the manifest ({exc.reason})", got=rel,
                         expected="a relative path inside the manifest's directory") from None


@dataclass(frozen=True)
class Artifact:
    """One produced file (or directory) listed in a manifest."""

    format: str
    precision: str
    path: str
    size_bytes: int
    sha256: str
    inputs: list
    outputs: list
    raw: dict

    def resolve(self, root: Path) -> Path:
        return confined(root, self.path)

    def verify(self, root: Path) -> Path:
        """Return the artifact's path after checking it exists and matches its sha256.

        Raises:
            InputError: missing file or escaping path.
            IntegrityError: checksum mismatch (corrupted or tampered with).
        """
        full = self.resolve(root)
        if not full.exists():
            raise InputError("manifest lists a file that does not exist", got=str(full),
                             expected="re-run edgekit export")
        if full.is_dir():  # every file of a directory artifact stays inside too (no symlink out)
            for entry in sorted(full.rglob("*")):
                confined(root, f"{self.path.rstrip('/')}/{entry.relative_to(full).as_posix()}")
        digest = sha256_tree(full)
        if digest != self.sha256:
            raise IntegrityError(f"checksum mismatch for {self.path}: corrupted or tampered with",
                                 got=digest[:16] + "...", expected=self.sha256[:16] + "...")
        return full


@dataclass(frozen=True)
class Manifest:
    path: Path
    data: dict

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def artifacts(self) -> list[Artifact]:
        return [Artifact(**{k: a[k] for k in ARTIFACT_KEYS}, raw=a) for a in self.data["artifacts"]]

    @property
    def failures(self) -> list[dict]:
        return list(self.data.get("failures", []))

    @property
    def source(self) -> dict:
        return dict(self.data.get("source", {}))


def load(path: Path) -> Manifest:
    """Read and validate a manifest (a file, or a directory holding ``manifest.json``).

    Raises:
        InputError: missing, unreadable, invalid JSON, wrong schema or escaping paths.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise InputError("manifest not found", got=str(path), expected="run edgekit export first")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError("manifest is not valid JSON", got=f"{path}: {exc}",
                         expected=f"a {SCHEMA} JSON file") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise InputError("manifest has the wrong schema", got=got, expected=SCHEMA)
    arts = data.get("artifacts")
    if not isinstance(arts, list):
        raise InputError("manifest has no artifact list", got=type(arts).__name__, expected="a list")
    for i, a in enumerate(arts):
        missing = [k for k in ARTIFACT_KEYS if not isinstance(a, dict) or k not in a]
        if missing:
            raise InputError(f"manifest artifact #{i} lacks keys", got=missing, expected=list(ARTIFACT_KEYS))
        confined(path.parent, a["path"])
    return Manifest(path, data)


def save(path: Path, data: dict) -> None:
    """Write a manifest atomically (it is written last, after every listed file exists)."""
    data = {"schema": SCHEMA, **{k: v for k, v in data.items() if k != "schema"}}
    write_json(Path(path), data)

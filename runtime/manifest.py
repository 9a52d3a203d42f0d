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
                    "seconds": float, "exported": iso8601, "source_fingerprint": str,
                    "stale": true, "stale_reason": str}],      # stale*: only when marked
     "failures": [{"format", "precision", "error"}],
     "kept": int}                                              # entries a partial export carried over

A partial export (a run that converts only some variants into an existing export) merges its
entries into the previous manifest (:func:`merge`): each artifact's ``source_fingerprint`` is
:func:`source_identity` of the model it was made from; when that differs from the manifest's
``source``, the entry is marked ``stale`` and verify gives its rows the status ``stale``.

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


# ---------------------------------------------------------------- partial exports
def variant_key(entry: dict) -> tuple[str, str]:
    """``(format, precision)`` of an artifact, failure or skipped entry."""
    return str(entry.get("format")), str(entry.get("precision"))


def source_identity(source: dict) -> str | None:
    """What says "the same model" across exports: for a live model the digest of its config and
    weights (``model_sha256``), for a ``.keras`` file the file's sha256 (a re-exported SavedModel
    is not byte-identical from run to run), else the SavedModel tree's (``fingerprint``)."""
    if source.get("kind") == "live" and source.get("model_sha256"):
        return source["model_sha256"]
    return source.get("source_sha256") or source.get("fingerprint")


def mark_stale(entry: dict, current: str | None) -> dict:
    """``entry`` with ``stale``/``stale_reason`` set when the source it was made from (its
    ``source_fingerprint``) is not ``current``, and cleared when it is again."""
    entry = {k: v for k, v in entry.items() if k not in ("stale", "stale_reason")}
    made_from = entry.get("source_fingerprint")
    if current is not None and made_from != current:
        entry["stale"] = True
        entry["stale_reason"] = (f"exported from another source (fingerprint {str(made_from)[:12]}..., now "
                                 f"{current[:12]}...): re-export it (edgekit export --formats "
                                 f"{entry.get('format')} --precisions {entry.get('precision')}) or use --clean")
    return entry


def merge(old: dict, new: dict, replaced: set[tuple[str, str]], order: list[tuple[str, str]],
          keep_source: bool) -> dict:
    """The manifest of a partial export: ``new`` (this run's manifest data, listing only the
    variants it converted) merged into ``old`` (the export directory's manifest).

    Variants in ``replaced`` (converted or failed this run) take this run's entries; every other
    variant keeps its old artifact or failure entry, marked stale (:func:`mark_stale`) when the
    source changed. A variant skipped this run keeps its old entry (the skip note is kept only
    when there is none).

    Args:
        old, new: manifest data.
        replaced: ``(format, precision)`` keys this run produced or failed.
        order: every ``(format, precision)`` in registry order (entries are sorted by it).
        keep_source: keep ``old``'s ``source`` and ``reference`` (the model files and golden file
            under the export directory were not replaced).
    """
    rank = {k: i for i, k in enumerate(order)}
    old_source = dict(old.get("source") or {})
    for_old = source_identity(old_source)

    def sort(entries: list[dict]) -> list[dict]:
        return sorted(entries, key=lambda e: rank.get(variant_key(e), len(rank)))

    merged = dict(new)
    if keep_source:
        merged["source"] = old_source
        if "reference" in old:
            merged["reference"] = old["reference"]
        else:
            merged.pop("reference", None)
    current = source_identity(dict(new.get("source") or {}))
    kept = [mark_stale({"source_fingerprint": for_old, **a}, current)
            for a in old.get("artifacts", []) if variant_key(a) not in replaced]
    merged["artifacts"] = sort(kept + list(new.get("artifacts", [])))
    kept_failures = [f for f in old.get("failures", []) if variant_key(f) not in replaced]
    merged["failures"] = sort(kept_failures + list(new.get("failures", [])))
    have = {variant_key(e) for e in merged["artifacts"] + merged["failures"]}
    fresh_skips = {variant_key(s) for s in new.get("skipped", [])}
    skipped = [s for s in old.get("skipped", []) if variant_key(s) not in replaced | fresh_skips]
    merged["skipped"] = sort([s for s in skipped + list(new.get("skipped", [])) if variant_key(s) not in have])
    merged["kept"] = len(kept)
    return merged

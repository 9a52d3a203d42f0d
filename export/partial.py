"""A partial export: replace only the variants a run converted, keep the others.

The run converts into a staging directory of its own (``.tmp-<exports>-p<pid>-*`` beside the
export directory); nothing in the export directory changes while converters run, so an
interrupted run leaves the previous export as it was. :func:`commit` then

1. removes the files of variants that failed this run, and swaps each converted variant's file
   or directory in by rename (a directory: the old one is renamed aside first, then removed),
   one at a time: the variant's old entry leaves the manifest (rewritten atomically) before its
   file is touched, its new entry joins once the new file is in place;
2. replaces a changed Keras source's ``source/`` and ``reference.npz`` (the manifest says "no
   golden file" in between);
3. writes the merged manifest (:func:`edgekit.runtime.manifest.merge`) last, atomically.

A run killed during steps 1-2 (renames only, milliseconds) leaves a manifest that lists only
files that are there and match their sha256 (at most the variant being swapped is missing from
it); a re-run completes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgekit.core.errors import EdgekitError
from edgekit.core.fsutil import TMP_PREFIX, ensure_writable_dir
from edgekit.runtime import manifest as mf

SOURCE_DIR = "source"          # a Keras source's model.keras + saved_model (export/keras_source.py)
REFERENCE_NAME = "reference.npz"


def previous(out: Path, clean: bool) -> mf.Manifest | None:
    """The export directory's manifest to merge into, or None: ``clean``, no export there yet, or
    a manifest that does not load (its files cannot be trusted: the directory is replaced)."""
    if clean or not (Path(out) / mf.MANIFEST_NAME).is_file():
        return None
    try:
        return mf.load(Path(out))
    except EdgekitError:
        return None


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A staging directory beside ``out`` (removed afterwards, whatever happens)."""
    out = Path(out)
    parent = ensure_writable_dir(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{out.name}-p{os.getpid()}-", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path, out: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(_aside_in(path, out), ignore_errors=True)
    else:
        path.unlink()
    _prune(path.parent, out)


def _aside_in(path: Path, out: Path) -> Path:
    trash = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-{path.name}-p{os.getpid()}-", dir=out.parent))
    trash.rmdir()
    os.replace(path, trash)
    return trash


def _prune(d: Path, out: Path) -> None:
    """Remove empty directories from ``d`` up to (not including) ``out``."""
    out = out.resolve()
    d = d.resolve()
    while d != out and out in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


def swap_in(src: Path, dst: Path, out: Path) -> None:
    """Move ``src`` (staging) to ``dst`` (export dir) by rename, replacing what is there."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_dir() and not dst.is_symlink():
        old = _aside_in(dst, out)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def commit(out: Path, tmp: Path, old: mf.Manifest, data: dict, replaced: set[tuple[str, str]],
           order: list[tuple[str, str]], keep_source: bool) -> dict:
    """Swap this run's variants from ``tmp`` into ``out`` and write the merged manifest; returns it.

    Args:
        out: the existing export directory (holds ``old``).
        tmp: this run's staging directory (its artifacts listed in ``data``).
        old: the export directory's manifest.
        data: this run's manifest data.
        replaced: ``(format, precision)`` keys converted or failed this run.
        order: every ``(format, precision)`` in registry order.
        keep_source: keep the previous model files and golden file (``source/``, ``reference.npz``).
    """
    out = Path(out)
    merged = mf.merge(old.data, data, replaced, order, keep_source)
    moves = [str(a["path"]) for a in data.get("artifacts", [])]
    if not keep_source:
        moves += [n for n in (SOURCE_DIR, REFERENCE_NAME) if (tmp / n).exists()]
    leaving = {str(a["path"]) for a in old.data.get("artifacts", []) if mf.variant_key(a) in replaced}
    removals = sorted(leaving - set(moves))
    if not keep_source:
        removals += [n for n in (SOURCE_DIR, REFERENCE_NAME) if n not in moves and (out / n).exists()]
    # 1.-2. one file at a time: its old entry leaves the manifest (written) before it is swapped,
    # its new entry joins after; so a run stopped anywhere lists only files that are there
    interim = dict(old.data)
    listed = list(old.data.get("artifacts", []))
    new_by_path = {str(a["path"]): a for a in data.get("artifacts", [])}
    variant_moves = [m for m in moves if m in new_by_path]
    source_moves = [m for m in moves if m not in new_by_path]

    def unlist(rel: str) -> None:
        nonlocal listed
        keep = [a for a in listed if str(a["path"]) != rel]
        if len(keep) != len(listed):
            listed = keep
            mf.save(out / mf.MANIFEST_NAME, {**interim, "artifacts": listed})

    for rel in removals:
        if rel in (SOURCE_DIR, REFERENCE_NAME):
            continue
        unlist(rel)
        _remove(out / rel, out)
    for rel in variant_moves:
        unlist(rel)
        swap_in(mf.confined(tmp, rel), out / rel, out)
        listed.append(new_by_path[rel])
    if not keep_source:
        if (old.data.get("reference") or {}).get("path") or (out / SOURCE_DIR).exists():
            interim["reference"] = {"error": "an export was interrupted while replacing the golden file: "
                                             "re-run edgekit export"}
            interim["source"] = {**old.source, "saved_model": None, "keras": None}
            mf.save(out / mf.MANIFEST_NAME, {**interim, "artifacts": listed})
        for rel in source_moves:
            swap_in(mf.confined(tmp, rel), out / rel, out)
        for rel in removals:
            if rel in (SOURCE_DIR, REFERENCE_NAME):
                _remove(out / rel, out)
    # 3. the merged manifest, last
    mf.save(out / mf.MANIFEST_NAME, merged)
    return merged

"""The report files: ``report.json`` (rows), ``parity.npz`` (arrays) and ``report.md``.

``report.json`` is a list of rows (see :data:`REQUIRED_KEYS`); ``parity.npz`` beside it
holds the Keras outputs (``<example>__keras__<output>``) and each row's format outputs
(``row<id>__<output>``) for the parity scatters. Every file is written atomically.

A verify of a subset merges (:func:`merge_reports`): rows are keyed by :data:`ROW_KEY`; this
run's rows replace the earlier ones with the same key, the others are kept if the file they
verified is still the one in its manifest (``sha256``), marked ``stale`` if it changed (or the
manifest now marks it stale), and dropped if it is no longer exported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import InputError
from edgekit.core.fsutil import atomic_file, strict_json, write_json
from edgekit.report.tables import STATUSES, format_markdown

REQUIRED_KEYS = ("example", "format", "precision", "runtime", "status", "max_abs_err", "atol", "metric",
                 "metric_keras", "metric_format", "size_bytes")
PARITY_NAME = "parity.npz"
#: what identifies a row across runs: a verify replaces the earlier rows with these keys.
ROW_KEY = ("example", "format", "precision", "runtime", "backend")


def check_rows(rows: object) -> list[dict]:
    """Validate report.json content (a list of rows with :data:`REQUIRED_KEYS`).

    Raises:
        InputError: not a list of rows with the required keys and a known status.
    """
    if not isinstance(rows, list):
        raise InputError("report.json must hold a list of rows", got=type(rows).__name__, expected="list")
    for i, r in enumerate(rows):
        missing = [k for k in REQUIRED_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            raise InputError(f"report.json row {i} lacks keys", got=missing, expected=list(REQUIRED_KEYS))
        if r["status"] not in STATUSES:
            raise InputError(f"report.json row {i} has an unknown status", got=r["status"],
                             expected=list(STATUSES))
    return rows


def write_reports(rows: Sequence[Mapping], parity: dict[str, np.ndarray], json_path: Path, md_path: Path,
                  seconds: float | None = None) -> None:
    """Write report.json, parity.npz (beside report.json) and report.md, each atomically."""
    rows = [dict(r) for r in rows]
    write_json(json_path, strict_json(check_rows(rows)))
    with atomic_file(Path(json_path).parent / PARITY_NAME, "wb") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **parity)
    with atomic_file(md_path) as tmp:
        tmp.write_text(format_markdown(rows, seconds))


def load_reports(json_path: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Read report.json and (if present) parity.npz beside it."""
    try:
        rows = json.loads(Path(json_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError("cannot read report.json", got=f"{json_path}: {exc}",
                         expected="a report written by edgekit verify") from exc
    parity: dict[str, np.ndarray] = {}
    pfile = Path(json_path).parent / PARITY_NAME
    if pfile.is_file():
        with np.load(pfile, allow_pickle=False) as z:
            parity = {k: z[k] for k in z.files}
    return check_rows(rows), parity


def row_key(row: Mapping) -> tuple:
    """The :data:`ROW_KEY` values of a row."""
    return tuple(row.get(k) for k in ROW_KEY)


class _Manifests:
    """Manifests by path, loaded once (None: gone or unreadable)."""

    def __init__(self) -> None:
        self.cache: dict[str, object] = {}

    def get(self, path: str | None) -> Any:
        from edgekit.core.errors import EdgekitError
        from edgekit.runtime import manifest as mf

        if not path:
            return None
        if path not in self.cache:
            try:
                self.cache[path] = mf.load(Path(path))
            except EdgekitError:
                self.cache[path] = None
        return self.cache[path]


def _listed(man: Any, row: Mapping) -> dict | None:
    """The manifest entry of the file a row verified (an artifact, or the source SavedModel)."""
    if row.get("format") == "savedmodel":
        src = man.source
        return {"path": src.get("saved_model"), "sha256": src.get("fingerprint")} \
            if src.get("saved_model") == row.get("path") else None
    return next((a for a in man.data.get("artifacts", []) if a.get("path") == row.get("path")), None)


def _stale(row: dict, why: str) -> dict:
    row = dict(row)
    if row["status"] != "stale":
        row["message"] = f"stale: {why} (was: {row['status']}); {row.get('message') or ''}".rstrip("; ")
        row["status"] = "stale"
    return row


def _carry(row: dict, manifests: _Manifests) -> dict | None:
    """An earlier row as it may stay in the report: as is, marked stale, or None (dropped)."""
    man = manifests.get(row.get("manifest"))
    when = row.get("measured") or "an earlier run"
    if man is None:
        if row.get("manifest"):
            return None                                   # that export is gone
        return _stale(row, "measured before edgekit recorded which file a row verified; re-run edgekit verify")
    if row.get("path") is None:                           # a conversion failure: kept while still listed
        failed = {(f.get("format"), f.get("precision")) for f in man.failures}
        return row if (row.get("format"), row.get("precision")) in failed else None
    entry = _listed(man, row)
    if entry is None:
        return None                                       # no longer exported
    if entry.get("sha256") != row.get("sha256"):
        fmt = str(row["format"]).split("-")[0]
        again = "edgekit verify" + ("" if fmt == "savedmodel" else f" --formats {fmt}")
        return _stale(row, f"{row['path']} changed since this row was measured ({when}): re-run {again}")
    if entry.get("stale"):
        return _stale(row, str(entry.get("stale_reason") or "exported from another version of the source"))
    return row


def _stamp(row: dict, manifests: _Manifests) -> dict:
    """A row of this run without the digest of its file (rows from the browser check) gets it
    from its manifest (verify checked every file against it before running), and the stale mark."""
    if row.get("sha256") is None and row.get("path"):
        man = manifests.get(row.get("manifest"))
        entry = _listed(man, row) if man is not None else None
        if entry is not None:
            row = {**row, "sha256": entry.get("sha256")}
            if entry.get("stale"):
                row = _stale(row, str(entry.get("stale_reason") or "exported from another version of the source"))
    return row


def merge_reports(json_path: Path, rows: Sequence[Mapping], parity: dict[str, np.ndarray],
                  fresh: bool = False) -> tuple[list[dict], dict[str, np.ndarray]]:
    """This run's rows merged into the report already at ``json_path``; returns rows and arrays to write.

    Rows with this run's keys (:data:`ROW_KEY`) are replaced in place; earlier rows of other keys
    stay when their file is unchanged, become ``stale`` when it changed, and are dropped when it
    is no longer exported (:func:`_carry`). Row ids and ``parity.npz`` arrays are renumbered.

    Args:
        json_path: the report.json to merge into (missing: nothing to merge).
        rows, parity: this run's rows and arrays.
        fresh: ignore the earlier report (default False).

    Raises:
        InputError: the earlier report.json cannot be read (``--fresh`` starts over).
    """
    manifests = _Manifests()
    new = [_stamp(dict(r), manifests) for r in rows]
    old_rows: list[dict] = []
    old_parity: dict[str, np.ndarray] = {}
    if not fresh and Path(json_path).is_file():
        try:
            old_rows, old_parity = load_reports(json_path)
        except (InputError, ValueError, OSError) as exc:
            raise InputError("cannot merge into the earlier report.json", got=f"{json_path}: {exc}",
                             expected="a report written by edgekit verify (or --fresh to start over)") from exc
    keys = {row_key(r) for r in new}
    by_key = {row_key(r): ("new", r) for r in new}
    out: list[tuple[str, dict]] = []
    placed: set = set()
    for r in old_rows:
        k = row_key(r)
        if k in keys:
            if k not in placed:
                out.append(by_key[k])
                placed.add(k)
            continue
        kept = _carry(dict(r), manifests)
        if kept is not None:
            out.append(("old", kept))
    for r in new:
        if row_key(r) in placed:
            continue
        at = max((i for i, (_, o) in enumerate(out) if o["example"] == r["example"]), default=len(out) - 1)
        out.insert(at + 1, ("new", r))
        placed.add(row_key(r))
    merged_parity = {k: v for k, v in old_parity.items() if "__keras__" in k}
    merged_parity.update({k: v for k, v in parity.items() if "__keras__" in k})
    result = []
    for new_id, (origin, r) in enumerate(out):
        arrays = parity if origin == "new" else old_parity
        prefix = f"row{r.get('id')}__"
        for name, arr in arrays.items():
            if name.startswith(prefix):
                merged_parity[f"row{new_id}__{name[len(prefix):]}"] = arr
        result.append({**r, "id": new_id})
    return result, merged_parity

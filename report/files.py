"""The report files: ``report.json`` (rows), ``parity.npz`` (arrays) and ``report.md``.

``report.json`` is a list of rows (see :data:`REQUIRED_KEYS`); ``parity.npz`` beside it
holds the Keras outputs (``<example>__keras__<output>``) and each row's format outputs
(``row<id>__<output>``) for the parity scatters. Every file is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edgekit.core.errors import InputError
from edgekit.core.fsutil import atomic_file, strict_json, write_json
from edgekit.report.tables import STATUSES, format_markdown

REQUIRED_KEYS = ("example", "format", "precision", "runtime", "status", "max_abs_err", "atol", "metric",
                 "metric_keras", "metric_format", "size_bytes")
PARITY_NAME = "parity.npz"


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

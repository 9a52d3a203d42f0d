"""Typed verify results: :class:`VerifyRow` (one file on one runtime) and :class:`VerifyReport`.

A row is also a read-only mapping with report.json's keys (``row["status"]``), so tables,
report files and tools that read report.json treat rows from memory and from disk alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.core.fsutil import json_default, strict_json

#: the statuses a row can have; only ``pass`` passes.
#:   pass: compared on enough rows, within tolerance and metric bounds.
#:   fail: compared, out of tolerance (or the metric dropped too far).
#:   error: did not run (conversion failed, the runtime refused the file, a crash).
#:   insufficient: ran, but compared too few rows to give a verdict.
#:   unverified: the file exists but nothing here can run it faithfully (e.g. an op the Core ML
#:       reference evaluator lacks); the message names what is missing.
#:   stale: the verdict is not about the current model: the file was exported from another version
#:       of the source (the manifest marks it stale), or, in a merged report.json, the file changed
#:       since the row was measured. Re-export / re-verify it.
STATUSES = ("pass", "fail", "error", "insufficient", "unverified", "stale")


class VerifyRow(Mapping[str, Any]):
    """One verified (example, format, precision, runtime): the verdict and by how much.

    Attributes (all read-only; ``None`` where not measured):
        example, format, precision, runtime, backend: what ran where.
        status: ``"pass"``, ``"fail"`` (compared, out of tolerance) or ``"error"`` (did not run).
        message: why it failed or errored ("" on a pass).
        max_abs_err, mean_abs_err, max_rel_err: error against Keras over the compared rows.
        atol, rtol: the tolerance applied; required_atol: the smallest atol that would have passed.
        metric, metric_keras, metric_format, metric_drop, max_metric_drop: the task metric.
        rows_compared: golden rows whose values were compared; rows_excluded: rows left out
            (outside an int8 calibration range).
        size_bytes, path, seconds: the file and the time taken.
        sha256, measured, manifest: the digest of the file verified, when (UTC ISO 8601) and the
            manifest it is listed in (a merged report.json checks rows against it).
        outputs: per-output comparison dicts (see :class:`edgekit.parity.compare.OutputCompareResult`).
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]):
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (f"VerifyRow({self.example}/{self.format}/{self.precision} on {self.runtime}: {self.status}"
                + (f", max_abs_err={self.max_abs_err:.3g}" if self.max_abs_err is not None else "") + ")")

    def _get(self, key: str) -> Any:
        return self._data.get(key)

    example = property(lambda self: str(self._data["example"]))
    format = property(lambda self: str(self._data["format"]))
    precision = property(lambda self: str(self._data["precision"]))
    runtime = property(lambda self: str(self._data.get("runtime") or "-"))
    backend = property(lambda self: self._get("backend"))
    status = property(lambda self: str(self._data["status"]))
    message = property(lambda self: str(self._data.get("message") or ""))
    max_abs_err = property(lambda self: self._get("max_abs_err"))
    mean_abs_err = property(lambda self: self._get("mean_abs_err"))
    max_rel_err = property(lambda self: self._get("max_rel_err"))
    atol = property(lambda self: self._get("atol"))
    rtol = property(lambda self: self._get("rtol"))
    required_atol = property(lambda self: self._get("required_atol"))
    metric = property(lambda self: self._get("metric"))
    metric_keras = property(lambda self: self._get("metric_keras"))
    metric_format = property(lambda self: self._get("metric_format"))
    metric_drop = property(lambda self: self._get("metric_drop"))
    max_metric_drop = property(lambda self: self._get("max_metric_drop"))
    rows_compared = property(lambda self: self._get("rows_compared"))
    rows_excluded = property(lambda self: self._get("rows_excluded"))
    size_bytes = property(lambda self: self._get("size_bytes"))
    path = property(lambda self: self._get("path"))
    seconds = property(lambda self: self._get("seconds"))
    sha256 = property(lambda self: self._get("sha256"))
    measured = property(lambda self: self._get("measured"))
    outputs = property(lambda self: list(self._data.get("outputs") or []))

    @property
    def passed(self) -> bool:
        """True only for ``status == "pass"``."""
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        """A copy of the row as report.json holds it."""
        return dict(self._data)


@dataclass
class VerifyReport:
    """Everything one verify found: the rows, the arrays behind the parity plots, the wall time.

    ``bool(report)`` is True when every row passed and there is at least one row: a verify that
    compared nothing is not a pass.

    Attributes:
        rows: one :class:`VerifyRow` per (file, runtime), ordered by example, then manifest order.
        parity: ``{"<example>__keras__<output>" | "row<id>__<output>": array}`` for the plots.
        seconds: wall time of the run.
    """

    rows: list[VerifyRow] = field(default_factory=list)
    parity: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    def __bool__(self) -> bool:
        return self.passed

    def counts(self) -> dict[str, int]:
        """``{status: number of rows}`` for every status."""
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}

    def failures(self) -> list[VerifyRow]:
        """The rows that did not pass."""
        return [r for r in self.rows if not r.passed]

    def summary(self) -> str:
        """``"14 rows: 13 pass, 1 fail, 0 error in 3.2 s"`` (other statuses listed when present)."""
        return _summary(self.counts(), len(self.rows), self.seconds)

    def append(self, row: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> VerifyRow:
        """Add a row (its ``id`` continues the numbering) and its output arrays; returns the row."""
        data = dict(row)
        data["id"] = len(self.rows)
        typed = VerifyRow(data)
        self.rows.append(typed)
        for name, arr in (arrays or {}).items():
            self.parity[f"row{data['id']}__{name}"] = np.asarray(arr)
        return typed

    def to_dicts(self) -> list[dict[str, Any]]:
        """The rows as report.json's list of dicts."""
        return [r.to_dict() for r in self.rows]

    def to_json(self, indent: int | None = 2) -> str:
        """report.json's content (strict JSON: NaN/Inf become null)."""
        return json.dumps(strict_json(self.to_dicts()), indent=indent, default=json_default)


def _summary(counts: Mapping[str, int], n: int, seconds: float | None) -> str:
    parts = [f"{counts.get('pass', 0)} pass", f"{counts.get('fail', 0)} fail", f"{counts.get('error', 0)} error"]
    parts += [f"{counts[s]} {s}" for s in STATUSES[3:] if counts.get(s)]
    return f"{n} rows: {', '.join(parts)}" + (f" in {seconds:.1f} s" if seconds is not None else "")


def summary_line(rows: Sequence[Mapping[str, Any]], seconds: float | None = None) -> str:
    """The one-line verdict of a list of rows (report.json's or a :class:`VerifyReport`'s)."""
    return _summary({s: sum(r["status"] == s for r in rows) for s in STATUSES}, len(rows), seconds)

"""Parity tables for people: the terminal table, the summary line and report.md's content.

Every table goes through :func:`edgekit.core.table.render`.
"""

from __future__ import annotations

from edgekit.core.fmt import human_size as _size
from edgekit.core.fmt import sci
from edgekit.core.table import render
from edgekit.parity.results import STATUSES, summary_line  # noqa: F401  (re-exported)

HEADER = ("example", "format", "precision", "runtime", "status", "max abs err", "atol",
          "metric Keras → format", "size")


def _metric(row: dict) -> str:
    if row.get("metric_keras") is None:
        return "-"
    fmt = row.get("metric_format")
    return (f"{row['metric']} {row['metric_keras']:.4f} → "
            f"{'-' if fmt is None else format(fmt, '.4f')}")


def cells(row: dict) -> list[str]:
    """The table cells of one row, in :data:`HEADER` order."""
    return [row["example"], row["format"], row["precision"], row.get("runtime") or "-", row["status"],
            sci(row.get("max_abs_err")), sci(row.get("atol")), _metric(row), _size(row.get("size_bytes"))]


def format_table(rows: list[dict]) -> str:
    """A plain-text table for the terminal, with each failing row's reason below it."""
    notes = [r.get("message") if r["status"] != "pass" else None for r in rows]
    return render(HEADER, [cells(r) for r in rows], notes=notes)


POLICY_HEADER = ("format", "precision", "atol (× max(1, peak Keras output))", "rtol", "max metric drop", "rows judged")


def policy_cells(rows: list[dict]) -> list[list[str]]:
    """The tolerance policy entries (default output) of the variants present in ``rows``."""
    from edgekit.core.errors import UsageError
    from edgekit.parity.tolerance import lookup

    out = []
    for fmt, prec in dict.fromkeys((r["format"], r["precision"]) for r in rows):
        try:
            t = lookup(fmt, prec)
        except UsageError:
            continue
        drop = "-" if t.max_metric_drop is None else f"{t.max_metric_drop:g}"
        scope = "inside the calibrated range" if t.calibrated_range_only else "all"
        atol = f"{t.atol:g}" + ("" if t.atol_scale == "peak" else " (absolute)")
        out.append([fmt, prec, atol, f"{t.rtol:g}", drop, scope])
    return out


def format_markdown(rows: list[dict], seconds: float | None = None) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    out = ["# edgekit parity report", "", summary_line(rows, seconds), "",
           render(HEADER, [cells(r) for r in rows], markdown=True)]
    bad = [r for r in rows if r["status"] != "pass"]
    if bad:
        out += ["", "## Failures", ""]
        out += [f"- {r['example']} {r['format']} {r['precision']} ({r.get('runtime') or '-'}): "
                f"{r['status']}: {esc(r.get('message') or '')}" for r in bad]
    pol = policy_cells(rows)
    if pol:
        out += ["", "## Tolerance policy (parity/tolerance.py)", "", render(POLICY_HEADER, pol, markdown=True)]
    return "\n".join(out) + "\n"

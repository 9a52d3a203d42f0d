"""The one table renderer: aligned plain text for terminals and GitHub Markdown for reports.

Every table edgekit prints (train summary, export summary, parity, bench, bench checks) goes
through :func:`render`, so they align, rule and escape the same way. Rows may carry a note
(a failing row's reason) that plain text prints indented on the next line.
"""

from __future__ import annotations

from typing import Iterable, Sequence


def _md(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def render(header: Sequence[str], rows: Iterable[Sequence[object]], *, markdown: bool = False,
           right: Iterable[int] = (), notes: Sequence[str | None] | None = None, rule: bool = True) -> str:
    """Render a table.

    Args:
        header: column titles.
        rows: one sequence of cells per row (converted with ``str``).
        markdown: GitHub Markdown instead of aligned plain text (default False).
        right: indices of right-aligned columns (plain text; default none).
        notes: per row, an optional line printed below it as ``    -> note`` (plain text only;
            default none).
        rule: a ``----`` line under the header in plain text (default True).

    Returns:
        The table, lines joined by ``\\n`` (no trailing newline).
    """
    body = [[str(c) for c in r] for r in rows]
    head = [str(h) for h in header]
    if markdown:
        out = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in body]
        return "\n".join(out)
    right = set(right)
    widths = [max([len(h)] + [len(r[i]) for r in body if i < len(r)]) for i, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=False))).rstrip()

    out = [line(head)] + (["  ".join("-" * w for w in widths)] if rule else [])
    for i, r in enumerate(body):
        out.append(line(r))
        note = notes[i] if notes is not None and i < len(notes) else None
        if note:
            out.append(f"    -> {note}")
    return "\n".join(out)

"""Small formatting helpers shared by the tables of train, export, verify and bench."""

from __future__ import annotations


def human_size(n: int | float | None) -> str:
    """Bytes as B/KB/MB/GB in 1024 steps (``"-"`` for None), e.g. ``2.3 KB``."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def sci(x: float | None) -> str:
    """An error or tolerance for a table cell: ``"-"`` for None, ``"0"``, ``1.23e-05`` for small or
    huge values, else four significant digits."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.2e}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.4g}"

"""Error text for one-line messages: the one place that trims exceptions and process output."""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 600) -> str:
    """``Type: message`` of an exception with its whitespace (newlines included) collapsed to
    single spaces, at most ``limit`` characters (default 600; a cut ends in ``...``)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip(": ")
    return text if len(text) <= limit else text[:limit] + "..."


def error_lines(exc: BaseException, limit: int = 2000, keep: int = 4) -> str:
    """A converter's message: the lines that say 'error' if any (at most ``keep``), else the first
    three, joined by `` | `` and prefixed with the exception type; at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    errs = [ln for ln in lines if "error" in ln.lower()]
    return f"{type(exc).__name__}: {' | '.join(errs[:keep] or lines[:3])}"[:limit]


def tail(text: str, n: int = 6, empty: str = "(no output)") -> str:
    """The last ``n`` non-empty lines of a process's output joined by `` | `` (``empty`` if none)."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or empty

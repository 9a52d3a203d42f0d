"""Running ``edgekit`` in-process for the tests, and reading what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.cli import run


def cli(argv, capsys) -> tuple[int, str, str]:
    code = run([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def report_rows(path: Path) -> list[dict]:
    data = json.loads(Path(path).read_text())
    return data if isinstance(data, list) else data["rows"]


def manifest(out: Path) -> dict:
    return json.loads((Path(out) / "manifest.json").read_text())


def listing(root: Path) -> set[str]:
    """Every path under ``root`` (relative), to prove a refusal wrote nothing."""
    return {p.relative_to(root).as_posix() for p in Path(root).rglob("*")} if Path(root).exists() else set()

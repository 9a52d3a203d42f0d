"""report.html: one self-contained page (no network, no scripts) rendered from a Jinja2 template.

Training plots are embedded PNGs (base64) and the parity scatters inline SVG drawn here, so
the page opens offline and needs no matplotlib.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgekit.core.fmt import sci
from edgekit.core.fsutil import atomic_file
from edgekit.report.tables import HEADER, POLICY_HEADER, cells, policy_cells, summary_line

MAX_POINTS = 400
#: Extra sections after the per-example ones and the benchmarks: ``"module:function"`` names, each
#: called as ``function(root: Path, rows: list[dict]) -> str`` (an HTML fragment, ``""`` for none) and
#: rendered in this order. A new section (e.g. a per-layer error one) adds its entry here.
EXTRA_SECTIONS: tuple[str, ...] = ("edgekit.report.explain_section:section_for",)  # issue 13


def scatter_svg(x: np.ndarray, y: np.ndarray, title: str, size: int = 240) -> str:
    """An inline SVG scatter of ``y`` (format) against ``x`` (Keras) with the y = x line."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) > MAX_POINTS:
        idx = np.linspace(0, len(x) - 1, MAX_POINTS).astype(int)
        x, y = x[idx], y[idx]
    m = 34
    lo = float(min(x.min(), y.min())) if len(x) else 0.0
    hi = float(max(x.max(), y.max())) if len(x) else 1.0
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.04
    lo, hi = lo - pad, hi + pad
    span = size - 2 * m

    def px(v):
        return m + (v - lo) / (hi - lo) * span

    def py(v):
        return size - m - (v - lo) / (hi - lo) * span

    pts = "".join(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2"/>' for a, b in zip(x, y, strict=True))
    t = html.escape(title)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
            f'viewBox="0 0 {size} {size}" role="img" aria-label="{t}">'
            f'<rect x="{m}" y="{m}" width="{span}" height="{span}" fill="#fff" stroke="#999"/>'
            f'<line x1="{px(lo)}" y1="{py(lo)}" x2="{px(hi)}" y2="{py(hi)}" stroke="#c33" '
            f'stroke-dasharray="4 3"/>'
            f'<g fill="#1f77b4" fill-opacity="0.55">{pts}</g>'
            f'<text x="{size / 2}" y="14" font-size="11" text-anchor="middle">{t}</text>'
            f'<text x="{size / 2}" y="{size - 6}" font-size="10" text-anchor="middle">Keras output</text>'
            f'<text x="10" y="{size / 2}" font-size="10" text-anchor="middle" '
            f'transform="rotate(-90 10 {size / 2})">format output</text>'
            f'<text x="{m}" y="{size - m + 12}" font-size="9">{lo:.3g}</text>'
            f'<text x="{size - m}" y="{size - m + 12}" font-size="9" text-anchor="end">{hi:.3g}</text>'
            f'</svg>')


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;
font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;white-space:nowrap}
th{background:#f3f3f3}td.msg{white-space:normal;min-width:20em;max-width:40em}nav a{margin-right:.8em}
tr.pass td.st{background:#d9f2d9}tr.fail td.st{background:#f9d0d0}tr.error td.st{background:#fbe3b5}
tr.insufficient td.st,tr.unverified td.st{background:#e4e4f7}tr.stale td.st{background:#e0e0e0}
.plots img{max-width:420px;margin:4px;border:1px solid #ddd}.scatters{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}figcaption{font-size:11px;max-width:240px}td.msg{font-size:11px;color:#733}
h2{margin-top:1.6em;border-bottom:1px solid #ddd}:target{outline:2px solid #333}"""


def _example_dir(root: Path, example: str, rows: list[dict]) -> Path | None:
    for cand in [root / example, root] + [Path(r["example_dir"]) for r in rows if r.get("example_dir")]:
        if cand.is_dir() and (cand / "example.json").is_file():
            try:
                if json.loads((cand / "example.json").read_text()).get("name", example) == example:
                    return cand
            except (OSError, json.JSONDecodeError):
                continue
    return None


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("edgekit.report", "templates"),
                              autoescape=True, trim_blocks=False, keep_trailing_newline=True)


def extra_sections(root: Path, rows: list[dict], names: tuple[str, ...] | None = None) -> list[str]:
    """The HTML fragments of the hooks ``names`` (default None: :data:`EXTRA_SECTIONS`), empty ones dropped."""
    import importlib

    out = []
    for name in EXTRA_SECTIONS if names is None else names:
        mod, _, fn = name.partition(":")
        frag = getattr(importlib.import_module(mod), fn)(root, rows)
        if frag:
            out.append(frag)
    return out


def render_html(rows: list[dict], parity: dict[str, np.ndarray], root: Path) -> str:
    """The self-contained report page (no network, no scripts), from ``templates/report.html.j2``.

    The first screen is :func:`edgekit.report.overview.overview_html` (status matrix and
    latency-vs-size scatters); the long table, the per-example plots, the benchmark section and
    the :data:`EXTRA_SECTIONS` follow.
    """
    from markupsafe import Markup

    from edgekit.report.bench_section import section_for  # "" when there is no bench.json
    from edgekit.report.overview import CSS as OVERVIEW_CSS
    from edgekit.report.overview import overview_html

    examples = []
    for ex in dict.fromkeys(r["example"] for r in rows):
        ex_rows = [r for r in rows if r["example"] == ex]
        d = _example_dir(root, ex, ex_rows)
        shots = [Path(p) for p in dict.fromkeys(r["screenshot"] for r in ex_rows if r.get("screenshot"))]
        scatters = []
        for r in ex_rows:
            for o in r.get("outputs") or []:
                key_k, key_f = f"{ex}__keras__{o['name']}", f"row{r.get('id')}__{o['name']}"
                if key_k in parity and key_f in parity:
                    title = " ".join(x for x in (r["format"], r["precision"], r.get("backend"), o["name"]) if x)
                    scatters.append({"svg": Markup(scatter_svg(parity[key_k], parity[key_f], title)),
                                     "caption": f"{r.get('runtime')}: {r['status']}, max abs err "
                                                f"{sci(o.get('max_abs_err'))}"})
        examples.append({"name": ex, "plots": [_img(p) for p in (sorted(d.glob("*.png")) if d else [])],
                         "screenshots": [_img(p) for p in shots if p.is_file()], "scatters": scatters})
    figures = sorted(root.glob("*.png")) if root.is_dir() else []  # e.g. the moons sweep figure
    return _environment().get_template("report.html.j2").render(
        css=Markup(_CSS + OVERVIEW_CSS), summary=summary_line(rows), overview=Markup(overview_html(rows, root)),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        header=HEADER, rows=[{"status": r["status"], "cells": cells(r), "message": r.get("message") or ""}
                             for r in rows],
        policy_header=POLICY_HEADER, policy=policy_cells(rows), examples=examples,
        bench_section=Markup(section_for(root)), figures=[_img(p) for p in figures],
        extra_sections=[Markup(f) for f in extra_sections(root, rows)])


def _img(path: Path):
    """A PNG embedded as base64 (an ``<img>`` as Markup), so the page works offline."""
    from markupsafe import Markup

    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return Markup("<img alt='{}' title='{}' src='data:image/png;base64,{}'>").format(path.stem, path.name, b64)


def write_html(rows: list[dict], parity: dict[str, np.ndarray], root: Path, out: Path) -> Path:
    """Render and write report.html atomically; returns its path."""
    with atomic_file(out) as tmp:
        tmp.write_text(render_html(rows, parity, Path(root)), encoding="utf-8")
    return Path(out)

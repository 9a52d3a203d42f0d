"""The per-layer error section of ``report.html``: where each variant diverges from Keras.

:func:`section_for` is the report's hook (``report.html.EXTRA_SECTIONS``): it reads every
``explain.json`` written by ``edgekit explain`` under the report's root (``explain.json``,
``exports/explain.json``, ``<example>/exports/explain.json``) and returns one HTML fragment, or
``""`` when there is none. Per export it draws one inline SVG chart: per Keras layer (x, in layer
order), each variant's error as a multiple of its tolerance (``max abs err / allowed``, log axis),
the tolerance as the line at 1, the first divergent layer of each variant marked and named. Layers
a variant fused into the next or could not match are gaps in its curve. Standard library only, no
scripts, no network.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

EXPLAIN_NAME = "explain.json"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
LO, HI = 1e-6, 1e6  # the ratio axis: a millionth of the tolerance to a million times it
_CSS = """.explain-sec svg text{font-family:system-ui,sans-serif}.explain-sec .explain-note{font-size:12px;color:#555;
max-width:60em}"""


def find(root: Path) -> list[Path]:
    """Every explain.json under ``root`` (itself, ``exports/``, ``<example>/exports/``, ``<dir>/``), sorted."""
    root = Path(root)
    cands = [root / EXPLAIN_NAME, root / "exports" / EXPLAIN_NAME]
    if root.is_dir():
        for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            cands += [child / "exports" / EXPLAIN_NAME, child / EXPLAIN_NAME]
    return [p for p in dict.fromkeys(cands) if p.is_file()]


def section_for(root: Path, rows: list[dict] | None = None) -> str:
    """The section for the report of ``root``, or ``""`` when no explain.json is there (``rows``
    unused: the hook's signature)."""
    paths = find(root)
    if not paths:
        return ""
    parts = []
    for p in paths:
        try:
            parts.append(render_one(json.loads(p.read_text()), title=str(p.parent.relative_to(root))
                                    if p.parent != Path(root) else Path(root).name))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parts.append(f"<p>{html.escape(str(p))} could not be read: {html.escape(type(exc).__name__)}: "
                         f"{html.escape(str(exc))}</p>")
    return (f"<section class='explain-sec' id='explain'><style>{_CSS}</style><h2>Per-layer error (edgekit explain)"
            "</h2><p class='explain-note'>Each variant's error at every Keras layer, as a multiple of its "
            "tolerance (max abs err / (atol &times; max(1, peak |Keras layer|))); above the line at 1 a layer "
            "is past it. The first divergent layer of a variant is circled and named; gaps are layers fused "
            "into the next one or not found in the variant.</p>" + "".join(parts) + "</section>")


def _y(ratio: float, top: int, h: int) -> float:
    r = min(max(ratio, LO), HI)
    return top + h * (math.log10(HI) - math.log10(r)) / (math.log10(HI) - math.log10(LO))


def render_one(doc: dict, title: str = "", width: int = 720) -> str:
    """One export's chart (``doc``: :meth:`edgekit.parity.explain.ExplainReport.to_dict`)."""
    variants = [v for v in doc.get("variants", []) if v.get("status") == "explained" and v.get("layers")]
    notes = [f"{v['format']}/{v['precision']}: {v.get('status')}: {v.get('note', '')}"
             for v in doc.get("variants", []) if v.get("status") != "explained"]
    if not variants:
        return (f"<h3>{html.escape(title)}</h3><p class='explain-note'>no variant explained"
                + ("".join(f"<br>{html.escape(n)}" for n in notes)) + "</p>")
    layers = [d["layer"] for d in variants[0]["layers"]]
    n = len(layers)
    left, right, top, plot_h, label_h = 52, 150, 24, 220, 90
    height = top + plot_h + label_h
    plot_w = width - left - right
    step = plot_w / max(n - 1, 1)
    t = html.escape(title)
    out = [f'<h3>{t}</h3><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="per-layer error, {t}">']
    for e in range(int(math.log10(LO)), int(math.log10(HI)) + 1, 2):
        y = _y(10.0 ** e, top, plot_h)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">1e{e}</text>')
    y1 = _y(1.0, top, plot_h)
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y1:.1f}" y2="{y1:.1f}" stroke="#d62728" '
               f'stroke-dasharray="4 3"/><text x="{left + plot_w + 4}" y="{y1 + 4:.1f}" font-size="10" '
               f'fill="#d62728">tolerance</text>')
    every = max(1, math.ceil(n / 40))
    for i, name in enumerate(layers):
        if i % every == 0:
            x = left + i * step
            out.append(f'<text x="{x:.1f}" y="{top + plot_h + 8}" font-size="9" text-anchor="end" '
                       f'transform="rotate(-60 {x:.1f} {top + plot_h + 8})">{html.escape(name)}</text>')
    for k, v in enumerate(variants):
        color = PALETTE[k % len(PALETTE)]
        pts, segs = [], []
        for i, d in enumerate(v["layers"][:n]):
            if d.get("max_abs_err") is None or not d.get("allowed"):
                if pts:
                    segs.append(pts)
                pts = []
                continue
            ratio = float(d["max_abs_err"]) / float(d["allowed"])
            pts.append((left + i * step, _y(ratio, top, plot_h), d, ratio))
        if pts:
            segs.append(pts)
        for seg in segs:
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in seg)
            out.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="1.5"/>')
            for x, y, d, ratio in seg:
                tip = html.escape(f"{v['format']}/{v['precision']} {d['layer']} ({d.get('kind')}, op {d.get('op')}): "
                                  f"max abs err {d['max_abs_err']:.3g}, allowed {d['allowed']:.3g} ({ratio:.3g}x)")
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{color}"><title>{tip}</title></circle>')
        first = (v.get("first_divergent") or {}).get("layer")
        label = f"{v['format']}/{v['precision']}" + (f": {first}" if first else ": no divergence")
        for seg in segs:
            for x, y, d, _ in seg:
                if d["layer"] == first:
                    out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="none" stroke="{color}" '
                               f'stroke-width="2"/>')
        ly = top + 12 + 14 * k
        out.append(f'<line x1="{left + plot_w + 10}" x2="{left + plot_w + 24}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"/><text x="{left + plot_w + 28}" y="{ly}" font-size="10">'
                   f'{html.escape(label)}</text>')
    out.append("</svg>")
    if notes:
        out.append("<p class='explain-note'>" + "<br>".join(html.escape(x) for x in notes) + "</p>")
    return "".join(out)

"""The benchmark section of ``report.html``: an HTML fragment with inline SVG bar charts.

:func:`section_for` is the hook the report calls: it returns ``""`` when the artifacts dir
has no ``bench.json``, else :func:`render_section` of it. The fragment is self-contained
(its own scoped ``<style>``, no scripts, no network) and uses the standard library only.
Per example it draws p50 latency at batch 1 (one bar per row and thread setting) and the
file size per format and precision, both on log axes (they span several decades).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from edgekit.report.bench_tables import row_name, size

BENCH_NAME = "bench.json"
COLORS = {"1": "#1f77b4", "all": "#ff7f0e"}
KIND_FILL = {"baseline": "#7f7f7f"}
_CSS = """.bench-sec .bench-note{font-size:12px;color:#555;max-width:60em}.bench-sec .bench-charts{display:flex;
flex-wrap:wrap;gap:16px}.bench-sec svg text{font-family:system-ui,sans-serif}.bench-sec table{font-size:12px}"""


def section_for(root: Path) -> str:
    """The benchmark section for the report of ``root`` (``root/bench.json``), or ``""`` if absent."""
    path = Path(root) / BENCH_NAME
    if not path.is_file():
        return ""
    try:
        doc = json.loads(path.read_text())
        return render_section(doc)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return (f"<section class='bench-sec' id='bench'><h2>Benchmarks</h2><p>bench.json could not be read: "
                f"{html.escape(f'{type(exc).__name__}: {exc}')}</p></section>")


def _log_axis(values: list[float]) -> tuple[float, float]:
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    return lo, (hi * 10 if hi == lo else hi)


def bar_chart(title: str, bars: list[tuple[str, float | None, str]], unit: str, width: int = 560) -> str:
    """A horizontal bar chart on a log axis: ``bars`` = [(label, value or None, colour)].

    Missing or non-positive values are drawn as a label with "n/a". Gridlines sit on decades.
    """
    label_w, bar_h, top, bottom = 230, 14, 26, 26
    plot_w = width - label_w - 70
    vals = [v for _, v, _ in bars if v is not None and v > 0]
    height = top + bottom + len(bars) * (bar_h + 4)
    t = html.escape(title)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{t}">',
             f'<text x="{width / 2}" y="15" font-size="12" text-anchor="middle">{t}</text>']
    if vals:
        lo, hi = _log_axis(vals)
        span = math.log10(hi) - math.log10(lo)

        def px(v: float) -> float:
            return label_w + (math.log10(v) - math.log10(lo)) / span * plot_w

        d = lo
        while d <= hi * 1.0001:
            x = px(d)
            parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - bottom + 2}" '
                         f'stroke="#ddd"/><text x="{x:.1f}" y="{height - 8}" font-size="9" '
                         f'text-anchor="middle">{d:g}</text>')
            d *= 10
        parts.append(f'<text x="{label_w + plot_w}" y="{height - 8}" font-size="9" dx="22">{html.escape(unit)}</text>')
    for i, (label, v, color) in enumerate(bars):
        y = top + i * (bar_h + 4)
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_h - 3}" font-size="10" text-anchor="end">'
                     f'{html.escape(label)}</text>')
        if v is None or v <= 0 or not vals:
            parts.append(f'<text x="{label_w + 4}" y="{y + bar_h - 3}" font-size="10" fill="#a33">n/a</text>')
            continue
        w = max(1.0, px(v) - label_w)
        shown = f"{v:.3g}"
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
                     f'<title>{html.escape(label)}: {shown} {html.escape(unit)}</title></rect>'
                     f'<text x="{label_w + w + 3:.1f}" y="{y + bar_h - 3}" font-size="9">{shown}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _latency_bars(rows: list[dict]) -> list[tuple[str, float | None, str]]:
    bars = []
    for r in rows:
        lat = r.get("latency") or {}
        color = KIND_FILL.get(r["kind"], COLORS.get(str(r["threads"]), "#1f77b4"))
        if r["kind"] == "raw":
            color = "#9ecae1" if str(r["threads"]) == "1" else "#fdd0a2"
        label = f"{row_name(r)} {r['precision']} · {r['threads']}t"
        bars.append((label, lat.get("p50_ms") if r["status"] == "ok" else None, color))
    return bars


def _size_bars(rows: list[dict]) -> list[tuple[str, float | None, str]]:
    seen, bars = set(), []
    for r in rows:
        if r["kind"] == "raw" or r["runner"] == "keras.call":
            continue
        name = "model.keras" if r["format"] == "keras" else (
            "saved_model/" if r["format"] == "savedmodel" else f"{r['format']} {r['precision']}")
        if name in seen:
            continue
        seen.add(name)
        kb = r["size_bytes"] / 1024 if r.get("size_bytes") else None
        bars.append((name, kb, KIND_FILL.get(r["kind"], "#2ca02c")))
    return bars


def _table(rows: list[dict]) -> str:
    head = ("row", "precision", "threads", "p50 ms", "p99 ms", "rows/s (batch)", "GFLOP/s", "% peak", "load s",
            "size", "peak RSS", "parity", "status")
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        lat, thr, par = r.get("latency") or {}, r.get("throughput") or {}, r.get("parity") or {}
        rps = thr.get("rows_per_s")
        cells = [row_name(r), r["precision"], str(r["threads"]),
                 "-" if lat.get("p50_ms") is None else f"{lat['p50_ms']:.4g}",
                 "-" if lat.get("p99_ms") is None else f"{lat['p99_ms']:.4g}",
                 "-" if rps is None else f"{rps:,.0f} (@{thr.get('batch')})",
                 "-" if not r.get("gflops") else f"{r['gflops']:.1f}",
                 "-" if not r.get("pct_peak") else f"{r['pct_peak']:.0%}",
                 "-" if r.get("load_s") is None else f"{r['load_s']:.3f}",
                 size(r.get("size_bytes")), size(r.get("peak_rss_bytes")), str(par.get("status", "unknown")),
                 r["status"] + (f": {r.get('error') or r.get('skipped')}" if r.get("error") or r.get("skipped")
                                else "")]
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def render_section(doc: dict) -> str:
    """The ``<section id="bench">`` fragment for a bench.json document."""
    rows = doc.get("rows") or []
    m, s = doc.get("machine") or {}, doc.get("settings") or {}
    b = s.get("budget") or {}
    parts = [f"<style>{_CSS}</style><section class='bench-sec' id='bench'><h2>Benchmarks</h2>",
             f"<p class='bench-note'>{html.escape(str(m.get('processor', '?')))}, {m.get('cpus', '?')} CPUs, "
             f"Python {html.escape(str(m.get('python', '?')))}; threads {html.escape(str(s.get('thread_counts')))}; "
             f"batch-1 latency after warm-up, at least {b.get('repeat', '?')} calls and {b.get('min_time', '?')} s "
             f"per row; throughput at batch {s.get('throughput_batch', '?')}; created "
             f"{html.escape(str(doc.get('created', '?')))}. Blue/orange: edgekit adapters with 1 thread/all "
             "cores; light blue/light orange: the raw runtime call without the adapter; grey: Keras and "
             "SavedModel baselines. The Core ML rows are edgekit's numpy reference evaluator: their speed "
             "says nothing about Core ML on an iPhone or a Mac.</p>"]
    checks = doc.get("checks") or []
    if checks:
        from edgekit.report.bench_tables import summary

        parts.append("<h3>Targets (reported, not enforced)</h3><pre>" +
                     html.escape("\n".join(summary(checks))) + "</pre>")
    from edgekit.report.bench_tables import format_floor

    floor = format_floor(doc)
    if floor:
        parts.append("<h3>Against the hardware floor</h3><pre>" + html.escape(floor) + "</pre>")
    for ex in dict.fromkeys(r["example"] for r in rows):
        er = [r for r in rows if r["example"] == ex]
        parts.append(f"<h3 id='bench-{html.escape(ex)}'>{html.escape(ex)}</h3><div class='bench-charts'>")
        parts.append(bar_chart(f"{ex}: p50 latency at batch 1 (log scale)", _latency_bars(er), "ms"))
        parts.append(bar_chart(f"{ex}: file size (log scale)", _size_bars(er), "KB"))
        parts.append("</div><details><summary>figures</summary>" + _table(er) + "</details>")
    parts.append("</section>")
    return "\n".join(parts)

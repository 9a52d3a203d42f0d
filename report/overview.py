"""The first screen of report.html: a status matrix and a latency-vs-size scatter per example.

The matrix has one row per example and one column per variant (format, precision and, where a
format runs on several backends or runtimes, that too); each verify row is exactly one cell,
coloured by its status, with the max error, tolerance and metric in its ``title`` (hover) and a
link to the row in the long table. The scatters plot, per example, each variant's file size
against its latency: the benchmark's batch-1 p50 (1 thread, edgekit adapter) from ``bench.json``
when that has the example, else the verify row's wall time, which the axis then says. Both are
plain HTML / inline SVG (no scripts, no network) and use the standard library only.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgekit.core.fmt import human_size, sci
from edgekit.parity.results import STATUSES

#: cell colours by status (also the legend's order).
STATUS_COLORS = {"pass": "#4caf50", "fail": "#e53935", "error": "#fb8c00", "insufficient": "#90caf9",
                 "unverified": "#b39ddb", "stale": "#bdbdbd"}
STATUS_GLYPH = {"pass": "✓", "fail": "✗", "error": "!", "insufficient": "…", "unverified": "?", "stale": "~"}
#: scatter point colours by format (others grey).
FORMAT_COLORS = {"tflite": "#1f77b4", "onnx": "#2ca02c", "coreml": "#9467bd", "tfjs": "#ff7f0e",
                 "tfjs-browser": "#8c564b"}
BENCH_NAME = "bench.json"
MIN_SECONDS = 0.0005  # verify rows round seconds to 1 ms: a 0.0 is drawn at 0.5 ms (its title says so)

CSS = ('.overview .matrix{border-collapse:collapse;font-size:12px}'
       '.overview .matrix th,.overview .matrix td{border:1px solid #fff;padding:2px 5px;text-align:center}'
       '.overview .matrix th{background:#eee;font-weight:600}.overview .matrix th.ex{text-align:left}'
       '.overview .matrix th.v{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;'
       'padding:4px 1px;vertical-align:bottom}'
       '.overview .first{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}'
       '.overview .first>div:last-child{flex:1 1 520px;min-width:0}'
       '.overview .matrix td.cell a{color:#fff;text-decoration:none;display:block;min-width:1.4em}'
       '.overview .matrix td.none{background:#f6f6f6;color:#bbb}'
       '.overview .legend span{display:inline-block;padding:1px 6px;margin-right:4px;color:#fff;font-size:12px}'
       '.overview .lat{display:flex;flex-wrap:wrap;gap:10px}'
       '.overview .note{font-size:12px;color:#555;max-width:70em}'
       + "".join(f".overview td.{s}{{background:{c}}}.overview .legend .{s}{{background:{c}}}"
                 for s, c in STATUS_COLORS.items()))


def variant_key(row: Mapping) -> tuple[str, str, str]:
    """The matrix column of a verify (or bench) row: ``(format, precision, backend or "")``."""
    return (str(row["format"]), str(row["precision"]), str(row.get("backend") or ""))


def _columns(rows: Sequence[Mapping]) -> tuple[list[tuple], list[tuple[str, tuple]]]:
    """Column keys (grouped by format, first-seen order) and each row's (example, column) cell.

    A second row with the same (example, variant) (e.g. one file on two runtimes) gets its own
    column keyed by its runtime too, so every row is exactly one cell.
    """
    taken: set[tuple[str, tuple]] = set()
    placed = []
    for r in rows:
        key: tuple = variant_key(r)
        if (r["example"], key) in taken:
            key = key + (str(r.get("runtime") or "-"),)
            n = 2
            while (r["example"], key) in taken:
                key, n = key[:4] + (f"#{n}",), n + 1
        taken.add((r["example"], key))
        placed.append((str(r["example"]), key))
    cols = list(dict.fromkeys(k for _, k in placed))
    fmt_order = list(dict.fromkeys(k[0] for k in cols))
    cols.sort(key=lambda k: fmt_order.index(k[0]))  # stable: within a format, first-seen order
    return cols, placed




def cell_title(row: Mapping) -> str:
    """The hover text of a cell: status, max error vs tolerance, metric, runtime, first line of the message."""
    parts = [f"{row['example']} · {row['format']} {row['precision']}"
             + (f" ({row['backend']})" if row.get("backend") else "") + f": {row['status']}",
             f"max abs err {sci(row.get('max_abs_err'))} (atol {sci(row.get('atol'))})"]
    if row.get("metric"):
        fmt = row.get("metric_format")
        parts.append(f"{row['metric']} Keras {sci(row.get('metric_keras'))} → format "
                     f"{'-' if fmt is None else sci(fmt)}")
    parts.append(f"runtime {row.get('runtime') or '-'}")
    msg = str(row.get("message") or "").strip().splitlines()
    if msg:
        parts.append(msg[0][:200])
    return "\n".join(parts)


def _col_label(key: tuple) -> str:
    return " ".join(x for x in key[1:] if x)


def matrix_html(rows: Sequence[Mapping], anchor: str = "row-") -> str:
    """The status matrix: a ``<table class="matrix">``, one ``<td class="cell STATUS">`` per row.

    Args:
        rows: verify rows (report.json's dicts or :class:`~edgekit.parity.results.VerifyRow`).
        anchor: prefix of the long table's row ids; cell i links to ``#{anchor}{i}`` (default ``"row-"``).
    """
    cols, placed = _columns(rows)
    by_cell = {cell: i for i, cell in enumerate(placed)}
    formats = list(dict.fromkeys(k[0] for k in cols))
    head1 = "".join(f"<th colspan='{sum(k[0] == f for k in cols)}'>{html.escape(f)}</th>" for f in formats)
    head2 = "".join(f"<th class='v'>{html.escape(_col_label(k))}</th>" for k in cols)
    out = ["<table class='matrix'>", f"<tr><th class='ex' rowspan='2'>example</th>{head1}</tr>",
           f"<tr>{head2}</tr>"]
    for ex in dict.fromkeys(e for e, _ in placed):
        tds = []
        for k in cols:
            i = by_cell.get((ex, k))
            if i is None:
                tds.append("<td class='none' title='not exported / not verified'>·</td>")
                continue
            r = rows[i]
            st = str(r["status"])
            tds.append(f"<td class='cell {html.escape(st)}' title='{html.escape(cell_title(r))}'>"
                       f"<a href='#{anchor}{i}'>{STATUS_GLYPH.get(st, st)}</a></td>")
        out.append(f"<tr><th class='ex'><a href='#{html.escape(ex)}'>{html.escape(ex)}</a></th>{''.join(tds)}</tr>")
    out.append("</table>")
    return "".join(out)


def legend_html() -> str:
    """The status colour legend."""
    return "<p class='legend'>" + "".join(
        f"<span class='{s}'>{STATUS_GLYPH[s]} {s}</span>" for s in STATUSES if s in STATUS_COLORS) + "</p>"


# ---------------------------------------------------------------- latency vs size
def load_bench(root: Path) -> list[dict]:
    """The rows of ``root/bench.json`` (``[]`` when absent or unreadable: the bench section reports that)."""
    path = Path(root) / BENCH_NAME
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text()).get("rows") or []
    except (OSError, json.JSONDecodeError, AttributeError):
        return []
    return [r for r in rows if isinstance(r, dict)]


def _bench_latency(bench: Sequence[Mapping]) -> dict[tuple[str, tuple[str, str, str]], float]:
    """``{(example, variant_key): p50 ms}`` of the ok adapter rows, 1 thread preferred over all cores."""
    out: dict = {}
    for want in ("all", "1"):  # "1" last, so it wins where both exist
        for r in bench:
            lat = (r.get("latency") or {}).get("p50_ms")
            if (r.get("kind") == "adapter" and r.get("status") == "ok" and str(r.get("threads")) == want
                    and isinstance(lat, (int, float)) and lat > 0):
                out[(str(r.get("example")), variant_key(r))] = float(lat)
    return out


def latency_points(rows: Sequence[Mapping], bench: Sequence[Mapping]) -> dict[str, dict]:
    """Per example: ``{"source": "bench"|"verify", "points": [...], "missing": n}``.

    An example present in ``bench`` takes its latencies from there (p50 at batch 1, in ms) and
    leaves out variants the bench did not time (counted in ``missing``); else each verify row's
    ``seconds`` (wall time of the whole verify of that file) is used, in ms. A point needs a size
    and a latency: one point per (example, variant) with data.
    """
    blat = _bench_latency(bench)
    benched = {ex for ex, _ in blat}
    cols, placed = _columns(rows)
    out: dict[str, dict] = {}
    for i, (ex, key) in enumerate(placed):
        r = rows[i]
        d = out.setdefault(ex, {"source": "bench" if ex in benched else "verify", "points": [], "missing": 0})
        size = r.get("size_bytes")
        if d["source"] == "bench":
            ms = blat.get((ex, key[:3])) if len(key) == 3 else None
            clamped = False
        else:
            s = r.get("seconds")
            ms = None if s is None else max(float(s), MIN_SECONDS) * 1e3
            clamped = s is not None and float(s) < MIN_SECONDS
        if not size or ms is None or not math.isfinite(ms):
            d["missing"] += 1
            continue
        d["points"].append({"row": i, "label": f"{key[0]} {_col_label(key)}", "format": key[0],
                            "status": str(r["status"]), "size_bytes": int(size), "ms": ms, "clamped": clamped})
    return out


def _log_range(vals: list[float]) -> tuple[float, float]:
    lo, hi = math.log10(min(vals)), math.log10(max(vals))
    if hi - lo < 0.3:
        mid = (hi + lo) / 2
        lo, hi = mid - 0.5, mid + 0.5
    pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float) -> list[float]:
    ticks = [10.0 ** e for e in range(math.floor(lo), math.ceil(hi) + 1) if lo <= e <= hi]
    if len(ticks) < 2:  # less than a decade: 1-2-5 steps
        ticks = [m * 10.0 ** e for e in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)
                 if lo <= math.log10(m * 10.0 ** e) <= hi]
    return ticks


def latency_size_svg(example: str, data: Mapping, width: int = 250, height: int = 190) -> str:
    """One example's latency (y, log) vs file size (x, log) scatter as inline SVG; ``""`` with no points."""
    pts = data["points"]
    if not pts:
        return ""
    ml, mr, mt, mb = 46, 10, 22, 34
    pw, ph = width - ml - mr, height - mt - mb
    xlo, xhi = _log_range([p["size_bytes"] / 1024 for p in pts])
    ylo, yhi = _log_range([p["ms"] for p in pts])

    def px(v: float) -> float:
        return ml + (math.log10(v) - xlo) / (xhi - xlo) * pw

    def py(v: float) -> float:
        return mt + ph - (math.log10(v) - ylo) / (yhi - ylo) * ph

    ylabel = "bench p50, batch 1, ms" if data["source"] == "bench" else "verify time per file, ms"
    t = html.escape(example)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="latsize" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{t}: latency vs size">',
             f'<text x="{ml + pw / 2}" y="14" font-size="11" text-anchor="middle">{t}</text>',
             f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>']
    for v in _ticks(xlo, xhi):
        parts.append(f'<line x1="{px(v):.1f}" y1="{mt}" x2="{px(v):.1f}" y2="{mt + ph}" stroke="#eee"/>'
                     f'<text x="{px(v):.1f}" y="{mt + ph + 11}" font-size="9" text-anchor="middle">{v:g}</text>')
    for v in _ticks(ylo, yhi):
        parts.append(f'<line x1="{ml}" y1="{py(v):.1f}" x2="{ml + pw}" y2="{py(v):.1f}" stroke="#eee"/>'
                     f'<text x="{ml - 3}" y="{py(v) + 3:.1f}" font-size="9" text-anchor="end">{v:g}</text>')
    parts.append(f'<text x="{ml + pw / 2}" y="{height - 4}" font-size="10" text-anchor="middle">'
                 f'file size, KB (log)</text>'
                 f'<text x="10" y="{mt + ph / 2}" font-size="9" text-anchor="middle" '
                 f'transform="rotate(-90 10 {mt + ph / 2})">{html.escape(ylabel)} (log)</text>')
    for p in pts:
        fill = FORMAT_COLORS.get(p["format"], "#777")
        ring = "" if p["status"] == "pass" else f' stroke="{STATUS_COLORS.get(p["status"], "#000")}" stroke-width="2"'
        ms = f"< {MIN_SECONDS * 1e3:g} ms" if p["clamped"] else f"{p['ms']:.3g} ms"
        tip = f"{p['label']}: {human_size(p['size_bytes'])}, {ms}, {p['status']}"
        parts.append(f'<circle class="pt" cx="{px(p["size_bytes"] / 1024):.1f}" cy="{py(p["ms"]):.1f}" r="4" '
                     f'fill="{fill}" fill-opacity="0.75"{ring}><title>{html.escape(tip)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def format_legend_html(formats: Sequence[str]) -> str:
    """Colour key of the scatter points (by format); a ring marks a row that did not pass."""
    items = "".join(f"<span style='background:{FORMAT_COLORS.get(f, '#777')}'>{html.escape(f)}</span>"
                    for f in dict.fromkeys(formats))
    return f"<p class='legend'>{items} <small>ring = not a pass (ring colour = status)</small></p>"


def overview_html(rows: Sequence[Mapping], root: Path, anchor: str = "row-") -> str:
    """The whole first screen: legend, matrix, then the latency-vs-size scatters (one per example)."""
    if not rows:
        return "<section class='overview' id='overview'><p>No rows.</p></section>"
    data = latency_points(rows, load_bench(root))
    svgs = [latency_size_svg(ex, d) for ex, d in data.items()]
    sources = {d["source"] for d in data.values() if d["points"]}
    note = {"bench": "y = the benchmark's p50 latency at batch 1 (edgekit adapter; 1 thread where timed, "
                     "else all cores) from bench.json",
            "verify": "y = the verify row's wall time for the whole golden set (no bench.json for these "
                      "examples: run <code>edgekit bench</code> for latencies)"}
    missing = sum(d["missing"] for d in data.values())
    parts = ["<section class='overview' id='overview'><div class='first'><div>", "<h2>Parity matrix</h2>",
             legend_html(), "<p class='note'>One cell per verified file and runtime; hover for max error, "
             "tolerance and metric; click for the row in the table below.</p>", matrix_html(rows, anchor),
             "</div><div>", "<h2>Latency vs file size</h2>",
             format_legend_html([p["format"] for d in data.values() for p in d["points"]]),
             "<p class='note'>" + "; ".join(note[s] for s in ("bench", "verify") if s in sources)
             + (f". {missing} variant(s) without a size or latency are left out" if missing else "") + ".</p>",
             "<div class='lat'>" + "".join(s for s in svgs if s) + "</div>", "</div></div></section>"]
    return "\n".join(parts)

"""Parity reports: the terminal table, ``report.json``, ``report.md`` and ``report.html``.

``report.json`` is a list of rows (see :data:`REQUIRED_KEYS`); ``parity.npz`` beside it
holds the Keras outputs (``<example>__keras__<output>``) and each row's format outputs
(``row<id>__<output>``) for the parity scatters. ``report.html`` is self-contained:
training plots are embedded PNGs (base64) and the scatters are inline SVG drawn here,
so it opens offline and needs no matplotlib. Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgekit.errors import InputError
from edgekit.fmt import human_size as _size
from edgekit.fsutil import atomic_file, write_json

REQUIRED_KEYS = ("example", "format", "precision", "runtime", "status", "max_abs_err", "atol", "metric",
                 "metric_keras", "metric_format", "size_bytes")
STATUSES = ("pass", "fail", "error")
HEADER = ("example", "format", "precision", "runtime", "status", "max abs err", "atol",
          "metric Keras → format", "size")
PARITY_NAME = "parity.npz"
MAX_POINTS = 400


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.2e}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.4g}"




def _metric(row: dict) -> str:
    if row.get("metric_keras") is None:
        return "-"
    fmt = row.get("metric_format")
    return (f"{row['metric']} {row['metric_keras']:.4f} → "
            f"{'-' if fmt is None else format(fmt, '.4f')}")


def cells(row: dict) -> list[str]:
    """The table cells of one row, in :data:`HEADER` order."""
    return [row["example"], row["format"], row["precision"], row.get("runtime") or "-", row["status"],
            _num(row.get("max_abs_err")), _num(row.get("atol")), _metric(row), _size(row.get("size_bytes"))]


def summary_line(rows: list[dict], seconds: float | None = None) -> str:
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    line = f"{len(rows)} rows: {counts['pass']} pass, {counts['fail']} fail, {counts['error']} error"
    return line + (f" in {seconds:.1f} s" if seconds is not None else "")


def format_table(rows: list[dict]) -> str:
    """A plain-text table for the terminal, with each failing row's reason below it."""
    body = [cells(r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(HEADER)]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r, c in zip(rows, body, strict=True):
        out.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if r["status"] != "pass" and r.get("message"):
            out.append(f"    -> {r['message']}")
    return "\n".join(out)


POLICY_HEADER = ("format", "precision", "atol (× max(1, peak Keras output))", "rtol", "max metric drop", "rows judged")


def policy_cells(rows: list[dict]) -> list[list[str]]:
    """The tolerance policy entries (default output) of the variants present in ``rows``."""
    from edgekit.errors import UsageError
    from runtime.tolerance import lookup

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
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(esc(c) for c in cells(r)) + " |" for r in rows]
    bad = [r for r in rows if r["status"] != "pass"]
    if bad:
        out += ["", "## Failures", ""]
        out += [f"- {r['example']} {r['format']} {r['precision']} ({r.get('runtime') or '-'}): "
                f"{r['status']}: {esc(r.get('message') or '')}" for r in bad]
    pol = policy_cells(rows)
    if pol:
        out += ["", "## Tolerance policy (runtime/tolerance.py)", "",
                "| " + " | ".join(POLICY_HEADER) + " |", "|" + "---|" * len(POLICY_HEADER)]
        out += ["| " + " | ".join(c) + " |" for c in pol]
    return "\n".join(out) + "\n"


def check_rows(rows: object) -> list[dict]:
    """Validate report.json content (a list of rows with :data:`REQUIRED_KEYS`).

    Raises:
        InputError: not a list of rows with the required keys and a known status.
    """
    if not isinstance(rows, list):
        raise InputError("report.json must hold a list of rows", got=type(rows).__name__, expected="list")
    for i, r in enumerate(rows):
        missing = [k for k in REQUIRED_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            raise InputError(f"report.json row {i} lacks keys", got=missing, expected=list(REQUIRED_KEYS))
        if r["status"] not in STATUSES:
            raise InputError(f"report.json row {i} has an unknown status", got=r["status"],
                             expected=list(STATUSES))
    return rows


def strict_json(value):
    """``value`` with NaN/Inf floats replaced by None, so report.json stays strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_reports(rows: list[dict], parity: dict[str, np.ndarray], json_path: Path, md_path: Path,
                  seconds: float | None = None) -> None:
    """Write report.json, parity.npz (beside report.json) and report.md, each atomically."""
    write_json(json_path, strict_json(check_rows(rows)))
    with atomic_file(Path(json_path).parent / PARITY_NAME, "wb") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **parity)
    with atomic_file(md_path) as tmp:
        tmp.write_text(format_markdown(rows, seconds))


def load_reports(json_path: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Read report.json and (if present) parity.npz beside it."""
    try:
        rows = json.loads(Path(json_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError("cannot read report.json", got=f"{json_path}: {exc}",
                         expected="a report written by edgekit verify") from exc
    parity: dict[str, np.ndarray] = {}
    pfile = Path(json_path).parent / PARITY_NAME
    if pfile.is_file():
        with np.load(pfile, allow_pickle=False) as z:
            parity = {k: z[k] for k in z.files}
    return check_rows(rows), parity


# ---------------------------------------------------------------- HTML
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
.plots img{max-width:420px;margin:4px;border:1px solid #ddd}.scatters{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}figcaption{font-size:11px;max-width:240px}td.msg{font-size:11px;color:#733}
h2{margin-top:1.6em;border-bottom:1px solid #ddd}"""


def _example_dir(root: Path, example: str, rows: list[dict]) -> Path | None:
    for cand in [root / example, root] + [Path(r["example_dir"]) for r in rows if r.get("example_dir")]:
        if cand.is_dir() and (cand / "example.json").is_file():
            try:
                if json.loads((cand / "example.json").read_text()).get("name", example) == example:
                    return cand
            except (OSError, json.JSONDecodeError):
                continue
    return None


def render_html(rows: list[dict], parity: dict[str, np.ndarray], root: Path) -> str:
    """The self-contained report page (no network, no scripts)."""
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>edgekit parity report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>edgekit parity report</h1>",
             f"<p>{html.escape(summary_line(rows))}; generated "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.</p>",
             "<h2>Parity table</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
             + "<th>message</th></tr>"]
    for r in rows:
        c = [html.escape(v) for v in cells(r)]
        c[4] = f"<td class='st'>{c[4]}</td>"
        tds = "".join(v if i == 4 else f"<td>{v}</td>" for i, v in enumerate(c))
        parts.append(f"<tr class='{html.escape(r['status'])}'>{tds}"
                     f"<td class='msg'>{html.escape(r.get('message') or '')}</td></tr>")
    parts.append("</table>")
    pol = policy_cells(rows)
    if pol:
        parts.append("<h3>Tolerance policy</h3><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in POLICY_HEADER) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in pol]
        parts.append("</table>")
    examples = list(dict.fromkeys(r["example"] for r in rows))
    parts.insert(4, "<nav>Examples: " + "".join(f"<a href='#{html.escape(e)}'>{html.escape(e)}</a>"
                                             for e in examples) + "</nav>")
    for ex in examples:
        ex_rows = [r for r in rows if r["example"] == ex]
        parts.append(f"<h2 id='{html.escape(ex)}'>{html.escape(ex)}</h2>")
        d = _example_dir(root, ex, ex_rows)
        pngs = sorted(d.glob("*.png")) if d else []
        if pngs:
            parts.append("<h3>Training plots</h3><div class='plots'>")
            parts += [_img(p) for p in pngs]
            parts.append("</div>")
        shots = list(dict.fromkeys(r["screenshot"] for r in ex_rows if r.get("screenshot")))
        shots = [Path(p) for p in shots if Path(p).is_file()]
        if shots:
            parts.append("<h3>In the browser (headless Chromium)</h3><div class='plots'>")
            parts += [_img(p) for p in shots]
            parts.append("</div>")
        scat = []
        for r in ex_rows:
            for o in r.get("outputs") or []:
                key_k, key_f = f"{ex}__keras__{o['name']}", f"row{r.get('id')}__{o['name']}"
                if key_k in parity and key_f in parity:
                    title = " ".join(x for x in (r["format"], r["precision"], r.get("backend"),
                                                 o["name"]) if x)
                    svg = scatter_svg(parity[key_k], parity[key_f], title)
                    cap = html.escape(f"{r.get('runtime')}: {r['status']}, max abs err "
                                      f"{_num(o.get('max_abs_err'))}")
                    scat.append(f"<figure>{svg}<figcaption>{cap}</figcaption></figure>")
        if scat:
            parts.append("<h3>Parity: format output vs Keras output</h3><div class='scatters'>")
            parts += scat
            parts.append("</div>")
    from bench.html import section_for  # standard library only; "" when there is no bench.json

    parts.append(section_for(root))
    extra = sorted(root.glob("*.png")) if root.is_dir() else []  # e.g. the moons sweep figure
    if extra:
        parts.append("<h2 id='figures'>Figures</h2><div class='plots'>")
        parts += [_img(p) for p in extra]
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _img(path: Path) -> str:
    """A PNG embedded as base64, so the page works offline."""
    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<img alt='{html.escape(path.stem)}' title='{html.escape(path.name)}' "
            f"src='data:image/png;base64,{b64}'>")


def write_html(rows: list[dict], parity: dict[str, np.ndarray], root: Path, out: Path) -> Path:
    """Render and write report.html atomically; returns its path."""
    with atomic_file(out) as tmp:
        tmp.write_text(render_html(rows, parity, Path(root)), encoding="utf-8")
    return Path(out)

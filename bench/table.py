"""The terminal table of bench rows (one line per row, errors indented below)."""

from __future__ import annotations

from edgekit.fmt import human_size as size

HEADER = ("example", "thr", "row", "precision", "p50 ms", "p99 ms", "rows/s @1024", "load s", "size",
          "peak RSS", "parity")


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if v < 1 else f"{v:.2f}"




def row_name(r: dict) -> str:
    """Short label: ``keras.predict``, ``tflite adapter``, ``tfjs raw (wasm)``, ``coreml adapter [ref]``."""
    if r["kind"] == "baseline":
        return r["runner"]
    name = f"{r['format']} {r['kind']}" + (f" ({r['backend']})" if r.get("backend") else "")
    return name + (" [ref eval]" if r["format"] == "coreml" else "")


def parity(r: dict) -> str:
    p = r.get("parity") or {}
    st = p.get("status", "unknown")
    if p.get("metric_format") is not None and p.get("metric"):
        return f"{st} {p['metric']}={p['metric_format']:.4f}"
    return st


def cells(r: dict) -> list[str]:
    lat, thr = r.get("latency") or {}, r.get("throughput") or {}
    rps = thr.get("rows_per_s")
    return [r["example"], str(r["threads"]), row_name(r), r["precision"], _ms(lat.get("p50_ms")),
            _ms(lat.get("p99_ms")), "-" if rps is None else f"{rps:,.0f}",
            "-" if r.get("load_s") is None else f"{r['load_s']:.3f}", size(r.get("size_bytes")),
            size(r.get("peak_rss_bytes")), parity(r)]


def format_table(rows: list[dict]) -> str:
    """Aligned plain text; a row with an error gets ``-> error`` on the next line."""
    body = [cells(r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(HEADER)]
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)), "  ".join("-" * w for w in widths)]
    for r, c in zip(rows, body, strict=True):
        out.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if r["status"] != "ok":
            out.append(f"    -> {r['status']}: {r.get('error') or ''}")
    return "\n".join(out)

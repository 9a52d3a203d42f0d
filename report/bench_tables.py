"""Bench tables for people: the rows (one line each, errors indented below) and the target checks."""

from __future__ import annotations

from edgekit.core.fmt import human_size as size
from edgekit.core.table import render

HEADER = ("example", "thr", "row", "precision", "p50 ms", "p99 ms", "rows/s @1024", "GFLOP/s", "% peak",
          "load s", "size", "peak RSS", "parity")


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if v < 1 else f"{v:.2f}"




def row_name(r: dict) -> str:
    """Short label: ``keras.predict``, ``tflite adapter``, ``tfjs raw (wasm)``, ``coreml adapter [ref]``."""
    if r["kind"] in ("baseline", "foreign"):
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
    rps, batch = thr.get("rows_per_s"), thr.get("batch")
    at = "" if batch in (None, 1024) else f" @{batch}"
    return [r["example"], str(r["threads"]), row_name(r), r["precision"], _ms(lat.get("p50_ms")),
            _ms(lat.get("p99_ms")), "-" if rps is None else f"{rps:,.0f}{at}",
            "-" if not r.get("gflops") else f"{r['gflops']:.1f}",
            "-" if not r.get("pct_peak") else f"{r['pct_peak']:.0%}",
            "-" if r.get("load_s") is None else f"{r['load_s']:.3f}", size(r.get("size_bytes")),
            size(r.get("peak_rss_bytes")), parity(r)]


def format_table(rows: list[dict]) -> str:
    """Aligned plain text; a row with an error gets ``-> error`` on the next line."""

    notes = [None if r["status"] == "ok" else f"{r['status']}: {r.get('error') or r.get('skipped') or ''}"
             for r in rows]
    return render(HEADER, [cells(r) for r in rows], notes=notes)


def format_compare(rows: list[dict]) -> str:
    """edgekit's fp32 files next to Keras' own exports and the raw converters' (``--compare-exports``):
    conversion time, file size, p50 of the raw call. Empty when the run had no foreign rows."""
    pick = [r for r in rows if r["kind"] == "foreign" or (r["kind"] == "raw" and r["precision"] == "fp32"
                                                         and r["format"] in ("tflite", "onnx"))]
    if not any(r["kind"] == "foreign" for r in pick):
        return ""
    pick.sort(key=lambda r: (r["example"], str(r["threads"]), r["format"], r["kind"] != "raw"))
    body, notes = [], []
    for r in pick:
        who = f"edgekit {r['format']} fp32" if r["kind"] == "raw" else r["runner"]
        conv = r.get("convert_s")
        body.append([r["example"], str(r["threads"]), r["format"], who, "-" if conv is None else f"{conv:.1f}",
                     size(r.get("size_bytes")), _ms((r.get("latency") or {}).get("p50_ms"))])
        notes.append(None if r["status"] == "ok" else f"{r['status']}: {r.get('error') or r.get('skipped') or ''}")
    return render(("example", "thr", "format", "file from", "convert s", "size", "p50 ms (raw call)"), body,
                  notes=notes)


def _raw(rows: list[dict], ex: str, th, fmt: str, prec: str, kind: str = "raw", runner: str | None = None):
    return next((r for r in rows if r["example"] == ex and r["threads"] == th and r["format"] == fmt
                 and r["precision"] == prec and r["kind"] == kind and r.get("backend") is None
                 and (runner is None or r["runner"] == runner) and r["status"] == "ok"), None)


def floor_rows(rows: list[dict]) -> list[list[str]]:
    """Per example and thread setting: MFLOPs, TFLite fp32 p50 / GFLOP/s / % of the fp32 peak, TFLite int8
    p50 / % of the int8 peak / speed-up over fp32, ONNX fp32 p50 / % of peak, and Keras' own LiteRT export's
    p50 when it was timed (raw calls throughout)."""
    out = []
    for ex, th in dict.fromkeys((r["example"], r["threads"]) for r in rows):
        f32, i8, ox = (_raw(rows, ex, th, "tflite", "fp32"), _raw(rows, ex, th, "tflite", "int8"),
                       _raw(rows, ex, th, "onnx", "fp32"))
        kx = _raw(rows, ex, th, "tflite", "fp32", "foreign", "keras.export.litert")
        if not (f32 or ox):
            continue
        flops = next((r["flops"] for r in (f32, ox) if r and r.get("flops")), None)

        def p50(r):
            return _ms(r["latency"]["p50_ms"]) if r else "-"

        def pct(r):
            return f"{r['pct_peak']:.0%}" if r and r.get("pct_peak") else "-"

        out.append([ex, str(th), "-" if not flops else f"{flops / 1e6:.3g}", p50(f32),
                    "-" if not (f32 and f32.get("gflops")) else f"{f32['gflops']:.1f}", pct(f32), p50(i8), pct(i8),
                    "-" if not (f32 and i8) else f"{f32['latency']['p50_ms'] / i8['latency']['p50_ms']:.2f}x",
                    p50(ox), pct(ox), p50(kx)])
    return out


FLOOR_HEADER = ("example", "thr", "MFLOPs", "tflite fp32 ms", "GFLOP/s", "% fp32 peak", "tflite int8 ms",
                "% int8 peak", "int8 speed-up", "onnx fp32 ms", "% peak", "keras litert ms")


def format_floor(doc: dict) -> str:
    """The hardware-floor table (see :func:`floor_rows`) with the measured peaks; "" without rows."""
    body = floor_rows(doc.get("rows") or [])
    if not body:
        return ""
    peaks = (doc.get("machine") or {}).get("peak") or {}
    head = "; ".join(f"threads {m}: fp32 {p.get('fp32_gflops') or 0:.0f} GFLOP/s, int8 {p.get('int8_gops') or 0:.0f} "
                     f"GOP/s" for m, p in peaks.items())
    return f"GEMM peaks measured here ({head}); raw calls, batch 1:\n" + render(FLOOR_HEADER, body)


# ---------------------------------------------------------------- checks
def _fmt_value(c: dict) -> str:
    v = c["value"]
    if v is None:
        return "-"
    if c["check"] == "speedup":
        return f"{v:,.0f}x"
    if c["check"] == "overhead_us":
        return f"{v:+.1f} µs"
    if c["check"] in ("vs_foreign", "int8_speedup"):
        return f"{v:.2f}x"
    return f"{v:+.1%}" if c["check"].startswith("overhead") else f"{v:.1%}"


def summary(checks: list[dict]) -> list[str]:
    """Short lines: per check kind, how many entries meet the target, and the worst value."""
    lines = []
    for kind in ("speedup", "overhead_b1", "overhead_bN", "size_int8", "size_fp16", "vs_foreign", "int8_speedup"):
        cs = [c for c in checks if c["check"] == kind]
        if not cs:
            continue
        measured = [c for c in cs if c["value"] is not None]
        met = sum(bool(c["met"]) for c in measured)
        if measured:
            worst = (min if kind in ("speedup", "vs_foreign", "int8_speedup") else max)(
                measured, key=lambda c: c["value"])
            where = f"{worst['example']} {worst['subject']}" + (f" threads={worst['threads']}"
                                                                if worst["threads"] else "")
            tail = f"; worst {_fmt_value(worst)} ({where})"
        else:
            tail = ""
        lines.append(f"{kind:<12} target {cs[0]['target']:<14} met {met}/{len(measured)}"
                     f"{'' if len(measured) == len(cs) else f' ({len(cs) - len(measured)} not measured)'}{tail}")
    fixed = sorted(c["value"] for c in checks if c["check"] == "overhead_us" and c["value"] is not None)
    if fixed:
        lines.append(f"{'overhead_us':<12} adapter fixed cost where the raw call < 0.1 ms: median "
                     f"{fixed[len(fixed) // 2]:+.1f} µs, max {fixed[-1]:+.1f} µs ({len(fixed)} variants)")
    return lines


def format_checks(checks: list[dict]) -> str:
    """Every check as a plain-text table (value, target, met) for the terminal or a README."""
    head = ("check", "example", "threads", "subject", "value", "target", "met", "detail")
    body = [(c["check"], c["example"], c["threads"] or "-", c["subject"] or "-", _fmt_value(c), c["target"],
             "-" if c["met"] is None else ("yes" if c["met"] else "NO"), c["detail"]) for c in checks]
    return render(head, body, rule=False)

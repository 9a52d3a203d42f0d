"""The issue's targets, evaluated on bench rows and reported whether or not they are met.

- ``speedup``: the fastest edge runtime (edgekit adapter rows of tflite, onnx and tfjs; the Core
  ML reference evaluator is not an edge runtime) at batch 1 is >= 100x faster (p50) than Keras
  ``model.predict``, per example and thread setting;
- ``overhead_b1`` / ``overhead_bN``: the adapter's overhead over the raw runtime call, p50 at
  batch 1 (<= 10%, for variants whose raw call takes >= 0.1 ms: real models; from the adapter
  row's ``paired`` measurement when present: both calls alternating in one process) and throughput at
  the throughput batch (<= 5%), per variant and thread setting;
- ``overhead_us``: for the tiny models (raw call < 0.1 ms, where Python's own call cost dominates)
  the adapter's fixed cost in µs at batch 1, reported with no target;
- ``vs_foreign``: edgekit's fp32 file (raw call) at least as fast as each foreign export of the
  same format (Keras' own ``model.export``, the raw converters at their defaults): p50 ratio
  foreign / edgekit >= 0.95 (5% timing noise allowed), per example and thread setting, from the
  foreign row's ``paired`` measurement (both files alternating in one process) when present;
- ``int8_speedup``: TFLite full-integer int8 >= 2x faster than TFLite fp32 at batch 1 (raw calls),
  for CNNs (reported for every example);
- ``size_int8`` / ``size_fp16``: TFLite int8 (full-integer and dynamic-range) files <= 40% of fp32,
  fp16 <= 60%, for the deep and grid regressions.
"""

from __future__ import annotations

EDGE_FORMATS = ("tflite", "onnx", "tfjs")
SPEEDUP_MIN = 100.0
OVERHEAD_B1_MAX = 0.10
#: the batch-1 overhead target applies from this raw p50 (ms) up; below it the fixed cost is reported.
OVERHEAD_MIN_RAW_MS = 0.1
OVERHEAD_BN_MAX = 0.05
SIZE_RATIO_MAX = {"int8": 0.40, "int8_dynamic": 0.40, "fp16": 0.60}
SIZE_EXAMPLES = ("regression_deep", "regression_grid")


def _ok(r: dict) -> bool:
    return r.get("status") == "ok" and bool(r.get("latency"))


def _p50(r: dict) -> float:
    return r["latency"]["p50_ms"]


def _rps(r: dict) -> float | None:
    return (r.get("throughput") or {}).get("rows_per_s")


def _variant(r: dict) -> str:
    return f"{r['format']} {r['precision']}" + (f" {r['backend']}" if r.get("backend") else "")


def speedups(rows: list[dict]) -> list[dict]:
    """One entry per (example, threads): model.predict p50 over the fastest edge adapter p50."""
    out = []
    groups = dict.fromkeys((r["example"], r["threads"]) for r in rows)
    for ex, th in groups:
        g = [r for r in rows if r["example"] == ex and r["threads"] == th and _ok(r)]
        pred = next((r for r in g if r["runner"] == "keras.predict"), None)
        edge = [r for r in g if r["kind"] == "adapter" and r["format"] in EDGE_FORMATS]
        raw = [r for r in g if r["kind"] == "raw"]
        entry = {"check": "speedup", "example": ex, "threads": th, "target": f">= {SPEEDUP_MIN:.0f}x",
                 "value": None, "met": None, "subject": None, "detail": ""}
        if pred is None or not edge:
            entry["detail"] = "missing " + ("model.predict" if pred is None else "edge runtime") + " row"
        else:
            best = min(edge, key=_p50)
            value = _p50(pred) / _p50(best)
            entry.update(value=value, met=value >= SPEEDUP_MIN, subject=_variant(best),
                         detail=f"model.predict {_p50(pred):.3f} ms vs {_variant(best)} {_p50(best):.4f} ms")
            if raw:
                braw = min(raw, key=_p50)
                entry["detail"] += f"; fastest raw call {_variant(braw)} {_p50(braw):.4f} ms " \
                                   f"({_p50(pred) / _p50(braw):.0f}x)"
        out.append(entry)
    return out


def overheads(rows: list[dict]) -> list[dict]:
    """Adapter vs raw call, per variant and thread setting (batch 1 p50 and batch-N throughput)."""
    out = []
    raw = {(r["example"], r["format"], r["precision"], r.get("backend"), r["threads"]): r
           for r in rows if r["kind"] == "raw" and _ok(r)}
    for a in rows:
        if a["kind"] != "adapter" or not _ok(a):
            continue
        r = raw.get((a["example"], a["format"], a["precision"], a.get("backend"), a["threads"]))
        if r is None:
            continue
        b1 = _p50(a) / _p50(r) - 1.0
        detail = f"adapter {_p50(a):.4f} ms vs raw {_p50(r):.4f} ms"
        pa, pr = _p50(a), _p50(r)
        pair = a.get("paired")
        if pair and pair.get("overhead") is not None:  # same process, alternating: the better figure
            b1, pa, pr = pair["overhead"], pair["adapter_p50_ms"], pair["raw_p50_ms"]
            detail = f"paired in one process: adapter {pa:.4f} ms vs raw {pr:.4f} ms ({pair['calls']} calls each)"
        if pr >= OVERHEAD_MIN_RAW_MS:
            out.append({"check": "overhead_b1", "example": a["example"], "threads": a["threads"],
                        "subject": _variant(a), "value": b1, "target": f"<= {OVERHEAD_B1_MAX:.0%}",
                        "met": b1 <= OVERHEAD_B1_MAX, "detail": detail})
        else:
            us = (pa - pr) * 1e3
            out.append({"check": "overhead_us", "example": a["example"], "threads": a["threads"],
                        "subject": _variant(a), "value": us, "target": "reported (raw call < 0.1 ms)",
                        "met": None, "detail": f"{detail} ({b1:+.0%})"})
        ra, rr = _rps(a), _rps(r)
        if ra and rr:
            bn = rr / ra - 1.0
            out.append({"check": "overhead_bN", "example": a["example"], "threads": a["threads"],
                        "subject": _variant(a), "value": bn, "target": f"<= {OVERHEAD_BN_MAX:.0%}",
                        "met": bn <= OVERHEAD_BN_MAX,
                        "detail": f"adapter {ra:,.0f} rows/s vs raw {rr:,.0f} rows/s"})
    return out


def sizes(rows: list[dict], examples: tuple[str, ...] = SIZE_EXAMPLES) -> list[dict]:
    """TFLite file size ratios to fp32 for the deep and grid models (sizes do not depend on threads)."""
    out = []
    seen = set()
    for ex in dict.fromkeys(r["example"] for r in rows):
        if ex not in examples:
            continue
        tfl = {r["precision"]: r.get("size_bytes") for r in rows
               if r["example"] == ex and r["format"] == "tflite" and r["kind"] == "adapter" and r.get("size_bytes")}
        fp32 = tfl.get("fp32")
        for prec, limit in SIZE_RATIO_MAX.items():
            if (ex, prec) in seen or prec not in tfl or not fp32:
                continue
            seen.add((ex, prec))
            ratio = tfl[prec] / fp32
            out.append({"check": "size_" + ("fp16" if prec == "fp16" else "int8"), "example": ex, "threads": None,
                        "subject": f"tflite {prec}", "value": ratio, "target": f"<= {limit:.0%} of fp32",
                        "met": ratio <= limit, "detail": f"{tfl[prec]:,} B vs fp32 {fp32:,} B"})
    return out


VS_FOREIGN_MIN = 0.95
INT8_SPEEDUP_MIN = 2.0


def vs_foreign(rows: list[dict]) -> list[dict]:
    """edgekit's fp32 raw call vs each foreign export's (same format, example and thread setting)."""
    out = []
    own = {(r["example"], r["format"], r["threads"]): r for r in rows
           if r["kind"] == "raw" and r["precision"] == "fp32" and r.get("backend") is None}
    for f in rows:
        if f["kind"] != "foreign":
            continue
        e = own.get((f["example"], f["format"], f["threads"]))
        entry = {"check": "vs_foreign", "example": f["example"], "threads": f["threads"],
                 "subject": f"{f['format']} vs {f['runner']}", "value": None,
                 "target": f">= {VS_FOREIGN_MIN:.2f}x", "met": None, "detail": ""}
        if e is None or not _ok(e) or not _ok(f):
            entry["detail"] = f"{f['runner']}: {f.get('error') or f.get('skipped') or 'no edgekit fp32 raw row'}"
        else:
            pf, pe, how = _p50(f), _p50(e), ""
            pair = f.get("paired")
            if pair and pair.get("raw_p50_ms"):  # both files alternating in one process: the better figure
                pf, pe = pair["adapter_p50_ms"], pair["raw_p50_ms"]
                how = f"paired in one process, {pair['calls']} calls each: "
            v = pf / pe
            entry.update(value=v, met=v >= VS_FOREIGN_MIN,
                         detail=f"{how}{f['runner']} {pf:.4f} ms vs edgekit {pe:.4f} ms")
        out.append(entry)
    return out


def int8_speedups(rows: list[dict]) -> list[dict]:
    """TFLite fp32 raw p50 over full-integer int8 raw p50, per example and thread setting."""
    out = []
    raw = {(r["example"], r["precision"], r["threads"]): r for r in rows
           if r["kind"] == "raw" and r["format"] == "tflite" and _ok(r)}
    for (ex, prec, th), r8 in raw.items():
        r32 = raw.get((ex, "fp32", th))
        if prec != "int8" or r32 is None:
            continue
        v = _p50(r32) / _p50(r8)
        out.append({"check": "int8_speedup", "example": ex, "threads": th, "subject": "tflite int8 vs fp32",
                    "value": v, "target": f">= {INT8_SPEEDUP_MIN:.0f}x", "met": v >= INT8_SPEEDUP_MIN,
                    "detail": f"fp32 {_p50(r32):.4f} ms vs int8 {_p50(r8):.4f} ms"})
    return out


def evaluate(rows: list[dict]) -> list[dict]:
    """Every check entry (``met`` is None when a needed row is missing or failed)."""
    return speedups(rows) + overheads(rows) + sizes(rows) + vs_foreign(rows) + int8_speedups(rows)

"""Real-model benchmark tables for the README, from one or more ``bench.json`` files.

Usage::

    .venv/bin/python benchmarks/real_models.py /tmp/real                      # build + export (once)
    .venv/bin/edgekit bench /tmp/real --formats tflite onnx --compare-exports --tune --no-rss \\
        --budget 0 --out /tmp/real/bench.json
    .venv/bin/python benchmarks/bench_real.py /tmp/real/bench.json [more.json ...]

Prints Markdown: the hardware floor per model (MFLOPs, GFLOP/s, % of the measured fp32/int8 GEMM
peak, int8 speed-up), edgekit's files against Keras' own exports and the raw converters
(conversion time, size, raw-call p50), the XNNPACK delegate partitions of each TFLite file, the
paired adapter overhead, and the tuning chosen.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgekit.report.bench_tables import FLOOR_HEADER, floor_rows, size


def _md(head, body) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |"
                                                                        for r in body]


def render(docs: list[dict]) -> str:
    rows = [r for d in docs for r in d["rows"]]
    out = []
    for d in docs:
        m = d["machine"]
        peaks = "; ".join(f"{k} thread(s): fp32 {p['fp32_gflops']:.0f} GFLOP/s, int8 {p['int8_gops']:.0f} GOP/s"
                          for k, p in (m.get("peak") or {}).items() if p.get("fp32_gflops"))
        out.append(f"- {d['created']}: {m['cpus']} CPUs, load average {m.get('load_avg')}, {d['seconds']:.0f} s, "
                   f"{len(d['rows'])} rows; GEMM peaks {peaks}")
    out += ["", "#### Against the hardware floor (raw runtime calls, batch 1)", ""]
    out += _md(FLOOR_HEADER, floor_rows(rows))
    comp = [r for r in rows if r["kind"] == "foreign" or (r["kind"] == "raw" and r["precision"] == "fp32"
                                                         and r["format"] in ("tflite", "onnx"))]
    if any(r["kind"] == "foreign" for r in comp):
        out += ["", "#### edgekit vs Keras' own exports and the raw converters (defaults)", ""]
        body = []
        for r in sorted(comp, key=lambda r: (r["example"], str(r["threads"]), r["format"], r["kind"] != "raw")):
            lat = (r.get("latency") or {}).get("p50_ms")
            body.append([r["example"], r["threads"], r["format"],
                         f"edgekit {r['format']} fp32" if r["kind"] == "raw" else r["runner"],
                         "-" if r.get("convert_s") is None else f"{r['convert_s']:.1f}", size(r.get("size_bytes")),
                         "-" if lat is None else f"{lat:.4f}",
                         r["status"] if r["status"] != "error" else "error: " + str(r.get("error"))[:80]])
        out += _md(("example", "thr", "format", "file from", "convert s", "size", "p50 ms", "status"), body)
    parts = {(r["example"], r["precision"]): r["delegate_partitions"] for r in rows
             if r["format"] == "tflite" and r["kind"] == "raw" and r.get("delegate_partitions") is not None}
    if parts:
        precs = [p for p in ("fp32", "fp16", "int8_dynamic", "int8") if any(k[1] == p for k in parts)]
        out += ["", "#### XNNPACK delegate partitions of edgekit's TFLite files (1 = XNNPACK takes every op)", ""]
        out += _md(("example", *precs), [[ex, *(parts.get((ex, p), "-") for p in precs)]
                                         for ex in dict.fromkeys(k[0] for k in parts)])
    pairs = [r for r in rows if r.get("paired")]
    if pairs:
        out += ["", "#### Adapter overhead, paired with the raw call in one process (batch 1)", ""]
        out += _md(("example", "thr", "variant", "raw p50 ms", "adapter p50 ms", "overhead", "µs"),
                   [[r["example"], r["threads"], f"{r['format']} {r['precision']}",
                     f"{r['paired']['raw_p50_ms']:.4f}", f"{r['paired']['adapter_p50_ms']:.4f}",
                     f"{r['paired']['overhead']:+.1%}", f"{r['paired']['overhead_us']:+.1f}"] for r in pairs])
    tuned = {p: t for d in docs for p, t in ((d.get("settings") or {}).get("tuned") or {}).items() if "options" in t}
    if tuned:
        out += ["", "#### Tuning chosen by measurement (recorded in the manifests)", ""]
        out += _md(("file", "chosen", "p50 ms per candidate"),
                   [["/".join(Path(p).parts[-4:]), t["chosen"],
                     "; ".join(f"{k}: {v:.4f}" for k, v in t["p50_ms"].items())] for p, t in tuned.items()])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", type=Path)
    args = ap.parse_args(argv)
    print(render([json.loads(p.read_text()) for p in args.json]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

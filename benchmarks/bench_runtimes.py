"""Runtime benchmark for the README: every export against Keras, per example, 1 thread and all cores.

Usage::

    .venv/bin/edgekit train all --out /tmp/bench-art && .venv/bin/edgekit export /tmp/bench-art
    .venv/bin/edgekit verify /tmp/bench-art            # parity status/metric for each row (optional)
    .venv/bin/python benchmarks/bench_runtimes.py /tmp/bench-art [--repeat 200] [--threads both]
    .venv/bin/python benchmarks/bench_runtimes.py --from-json /tmp/bench-art/bench.json   # re-print

Runs ``edgekit bench`` (:func:`edgekit.bench.run.run`), writes ``bench.json`` (default DIR/bench.json)
and prints, in Markdown: per example the Keras baselines against the fastest edge runtime;
per format and precision the median over examples of p50/p99 latency, throughput, load time,
peak RSS and size, adapter and raw call side by side; and the issue's targets with the
measured values (reported whether or not they are met).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgekit.bench import checks as bchecks  # noqa: E402
from edgekit.report.bench_tables import row_name, size, summary  # noqa: E402


def _p50(r: dict) -> float | None:
    return (r.get("latency") or {}).get("p50_ms") if r["status"] == "ok" else None


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if v < 0.1 else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def _med(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _variant(r: dict | None) -> str:
    if r is None:
        return "-"
    return f"{r['format']} {r['precision']}" + (f" {r['backend']}" if r.get("backend") else "")


def examples_table(rows: list[dict], threads: str) -> list[str]:
    out = [f"#### Batch-1 p50 latency per example, threads={threads} (ms)", "",
           "| example | model.predict | model(x) | SavedModel fn | fastest edge (adapter) | p50 | speedup vs predict "
           "| fastest raw call | p50 |", "|---|---|---|---|---|---|---|---|---|"]
    for ex in dict.fromkeys(r["example"] for r in rows):
        g = [r for r in rows if r["example"] == ex and r["threads"] == threads]
        base = {r["runner"]: _p50(r) for r in g if r["kind"] == "baseline"}
        edge = [r for r in g if r["kind"] == "adapter" and r["format"] in bchecks.EDGE_FORMATS and _p50(r)]
        raw = [r for r in g if r["kind"] == "raw" and _p50(r)]
        be = min(edge, key=_p50) if edge else None
        br = min(raw, key=_p50) if raw else None
        pred = base.get("keras.predict")
        speed = f"{pred / _p50(be):,.0f}x" if pred and be else "-"
        out.append(f"| {ex} | {_ms(pred)} | {_ms(base.get('keras.call'))} | {_ms(base.get('savedmodel.signature'))} | "
                   f"{_variant(be)} | {_ms(_p50(be)) if be else '-'} | {speed} | "
                   f"{_variant(br)} | {_ms(_p50(br)) if br else '-'} |")
    return out


def formats_table(rows: list[dict], threads: str) -> list[str]:
    out = [f"#### Per row kind, median over examples, threads={threads}", "",
           "| row | precision | p50 ms | p99 ms | rows/s @1024 | load s | peak RSS | size | examples ok |",
           "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["threads"] == threads:
            groups.setdefault((row_name(r), r["precision"]), []).append(r)
    for (name, prec), g in groups.items():
        ok = [r for r in g if r["status"] == "ok"]
        p50 = _med([r["latency"]["p50_ms"] for r in ok])
        p99 = _med([r["latency"]["p99_ms"] for r in ok])
        rps = _med([(r.get("throughput") or {}).get("rows_per_s") for r in ok])
        load = _med([r.get("load_s") for r in ok])
        rss = _med([r.get("peak_rss_bytes") for r in ok])
        sz = _med([r.get("size_bytes") for r in g])
        out.append(f"| {name} | {prec} | {_ms(p50)} | {_ms(p99)} | {'-' if rps is None else f'{rps:,.0f}'} | "
                   f"{'-' if load is None else f'{load:.3f}'} | {size(None if rss is None else int(rss))} | "
                   f"{size(None if sz is None else int(sz))} | {len(ok)}/{len(g)} |")
    return out


def overhead_table(checks: list[dict]) -> list[str]:
    out = ["#### Adapter overhead over the raw runtime call (median and worst over examples)", "",
           "| variant | threads | batch 1 median | batch 1 worst | batch 1024 median | batch 1024 worst |",
           "|---|---|---|---|---|---|"]
    keys = dict.fromkeys((c["subject"], c["threads"]) for c in checks if c["check"].startswith("overhead"))
    for subj, th in keys:
        b1 = [c["value"] for c in checks if c["check"] == "overhead_b1" and c["subject"] == subj and c["threads"] == th]
        bn = [c["value"] for c in checks if c["check"] == "overhead_bN" and c["subject"] == subj and c["threads"] == th]

        def f(v):
            return "-" if v is None else f"{v:+.0%}"

        out.append(f"| {subj} | {th} | {f(_med(b1))} | {f(max(b1) if b1 else None)} | {f(_med(bn))} | "
                   f"{f(max(bn) if bn else None)} |")
    return out


def size_table(checks: list[dict]) -> list[str]:
    if not any(c["check"].startswith("size") for c in checks):
        return ["(no deep/grid TFLite sizes in this run)"]
    out = ["#### TFLite file size relative to fp32", "", "| example | variant | ratio | target | met | bytes |",
           "|---|---|---|---|---|---|"]
    for c in checks:
        if c["check"].startswith("size"):
            out.append(f"| {c['example']} | {c['subject']} | {c['value']:.1%} | {c['target']} | "
                       f"{'yes' if c['met'] else 'NO'} | {c['detail']} |")
    return out


def render(doc: dict) -> str:
    rows, checks = doc["rows"], doc["checks"]
    m, s = doc["machine"], doc["settings"]
    lines = [f"### edgekit bench: {len(dict.fromkeys(r['example'] for r in rows))} examples, {len(rows)} rows, "
             f"{doc['seconds'] / 60:.1f} min", "",
             f"Machine: {m['processor']}, {m['cpus']} CPUs, load average at the end {m.get('load_avg')}; "
             f"threads {s['thread_counts']}; budget {s['budget']}; created {doc['created']}.", ""]
    for th in s["threads"]:
        lines += examples_table(rows, th) + [""]
    for th in s["threads"]:
        lines += formats_table(rows, th) + [""]
    lines += overhead_table(checks) + [""] + size_table(checks) + [""]
    lines += ["#### Targets (measured, not enforced)", "", "```"] + summary(checks) + ["```", ""]
    errors = [r for r in rows if r["status"] != "ok"]
    if errors:
        lines += [f"#### Rows with errors ({len(errors)})", ""]
        lines += [f"- {r['example']} {row_name(r)} {r['precision']} threads={r['threads']}: {r['error']}"
                  for r in errors[:40]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", type=Path, help="artifacts dirs (default: artifacts/)")
    ap.add_argument("--threads", choices=("1", "all", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=200, help="min timed batch-1 calls per row (default 200)")
    ap.add_argument("--min-time", type=float, default=0.5, help="min seconds of batch-1 calls per row (default 0.5)")
    ap.add_argument("--max-time", type=float, default=20.0,
                    help="cut a row's batch-1 loop after this many seconds (default 20)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS probes")
    ap.add_argument("--json", type=Path, default=None, help="bench.json path (default DIR/bench.json)")
    ap.add_argument("--from-json", type=Path, default=None, help="only re-print an existing bench.json")
    ap.add_argument("--md", type=Path, default=None, help="also write the Markdown here")
    args = ap.parse_args(argv)
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
    else:
        from edgekit.bench.run import run, write
        from edgekit.bench.timing import Budget

        dirs = args.dirs or [REPO / "artifacts"]
        threads = ("1", "all") if args.threads == "both" else (args.threads,)
        budget = Budget(repeat=args.repeat, min_time=args.min_time, max_time=args.max_time)
        doc = run(dirs, threads=threads, budget=budget,
                  rss=not args.no_rss, log=lambda s: print(s, file=sys.stderr, flush=True),
                  total_budget=None)  # the README's full run: every case, no time budget
        write(doc, args.json or dirs[0] / "bench.json")
    text = render(doc)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

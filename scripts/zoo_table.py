"""Build the realistic test zoo, export and verify every model, and print the README's table.

    .venv/bin/python scripts/zoo_table.py [--out DIR] [--models a,b] [--json PATH] [--md PATH]

For every model of ``tests/zoo/models.py``: build it (SavedModel + model.keras + golden file;
skipped when DIR/<model> is already built), export it to every format and precision in ONE process
(``edgekit.export.api.export_model``, which runs ``edgekit check`` first: its prediction),
then verify all exports at once (``edgekit.parity.verify.verify``, 2 files at a time). The table
has one row per model and one column per (format, precision): ``pass``, or the failed rows'
status and reason, with the predicted failure from check next to it. Timings (export seconds per
model, verify seconds per row, wall time) are printed and written to the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "zoo"))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")


def cell(rows: list[dict]) -> str:
    """One table cell from the verify rows of one (model, format, precision)."""
    if not rows:
        return "-"
    bad = [r for r in rows if r["status"] != "pass"]
    if not bad:
        return "pass"
    r = bad[0]
    where = f" ({r['backend']})" if r.get("backend") and len(rows) > 1 and len(bad) < len(rows) else ""
    msg = r.get("message") or ""
    msg = msg.removeprefix("conversion failed: ")
    return f"{r['status']}{where}: {msg[:120]}"


def main(argv: list[str] | None = None) -> int:
    import models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "artifacts" / "zoo")
    ap.add_argument("--models", default=",".join(models.ZOO))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    t_wall = time.perf_counter()
    built = {}
    for n in names:
        d = args.out / n
        if not (d / "zoo.json").is_file():
            t0 = time.perf_counter()
            models.build(n, d)
            print(f"built {n} in {time.perf_counter() - t0:.1f} s", flush=True)
        built[n] = d
    t_build = time.perf_counter() - t_wall

    from edgekit.core.formats import variants
    from edgekit.export.api import export_model

    predictions, export_secs = {}, {}
    t_export = time.perf_counter()
    for n, d in built.items():
        t0 = time.perf_counter()
        # export runs edgekit check first (report.preflight: "fmt: verdict: reason" per predicted failure)
        rep = export_model(d / "saved_model", out=d / "saved_model_exports", calibration=d / "calibration.npz")
        predictions[n] = {"formats": [dict(zip(("format", "verdict", "reason"), (line.split(": ", 2) + [""])[:3]))
                                      for line in rep.preflight]}
        export_secs[n] = {"export": round(time.perf_counter() - t0, 2)}
        failed = [f"{r.format}/{r.precision}" for r in rep.results if r.status == "failed"]
        print(f"exported {n} in {export_secs[n]['export']:.1f} s (check included)"
              + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    t_export = time.perf_counter() - t_export

    from edgekit.parity.verify import verify

    t0 = time.perf_counter()
    report = verify([built[n] / "saved_model_exports" for n in names], jobs=args.jobs, light_coreml=False)
    t_verify = time.perf_counter() - t0
    rows = report.to_dicts()
    cols = [(f, p.value) for f, p in variants()]
    table = {}
    for n in names:
        table[n] = {f"{f}/{p}": cell([r for r in rows if r["example"] == n and r["format"] == f
                                      and r["precision"] == p]) for f, p in cols}
    slowest = sorted(rows, key=lambda r: -(r.get("seconds") or 0))[:5]
    summary = {"wall_seconds": round(time.perf_counter() - t_wall, 1), "build_seconds": round(t_build, 1),
               "cpu_seconds": round(sum(os.times()[:4]), 1), "load_average_end": os.getloadavg(),
               "export_seconds": round(t_export, 1), "verify_seconds": round(t_verify, 1),
               "verify_rows": len(rows), "verify_summary": report.summary(),
               "slowest_rows": [{k: r.get(k) for k in ("example", "format", "precision", "backend", "seconds")}
                                for r in slowest],
               "per_model": export_secs, "table": table, "predictions": predictions,
               "rows": [{k: r.get(k) for k in ("example", "format", "precision", "backend", "status", "seconds",
                                               "max_abs_err", "message", "runtime")} for r in rows]}
    md = markdown(table, cols, predictions)
    print(md)
    print(f"\n{report.summary()}; build {t_build:.1f} s, check+export {t_export:.1f} s, verify {t_verify:.1f} s "
          f"({len(rows)} rows), wall {summary['wall_seconds']} s, CPU {summary['cpu_seconds']} s, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("slowest rows: " + ", ".join(f"{r['example']}/{r['format']}/{r['precision']}"
                                        f"{'/' + r['backend'] if r.get('backend') else ''} {r['seconds']} s"
                                        for r in summary["slowest_rows"]))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    if args.md:
        args.md.write_text(md + "\n")
    return 0 if report.passed else 1


def markdown(table: dict, cols: list, predictions: dict) -> str:
    from edgekit.core.table import render

    head = ["model"] + [f"{f} {p}" for f, p in cols]
    body = []
    for n, cells in table.items():
        row = [n]
        for f, p in cols:
            c = cells[f"{f}/{p}"]
            pred = _predicted(predictions.get(n, {}), f, p)
            if c != "pass" and pred:
                c += f" (check: {pred})"
            elif c != "pass" and not pred:
                c += " (check: not predicted)"
            row.append(c)
        body.append(row)
    return render(head, body, markdown=True)


def _predicted(pred: dict, fmt: str, precision: str) -> str:
    for v in pred.get("formats", []):
        if v.get("format") == fmt and v.get("verdict") != "ok":
            return v.get("reason") or v.get("verdict")
    return ""


if __name__ == "__main__":
    sys.exit(main())

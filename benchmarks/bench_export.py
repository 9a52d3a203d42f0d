"""Time one example's export to every format and variant, in ONE process (issue 3: <= 30 s on 2 cores).

Usage::

    .venv/bin/python benchmarks/bench_export.py [--source artifacts/moons_h3] [--json out.json]

Without ``--source`` it uses ``artifacts/moons_h3`` if it exists, else quick-trains
``moons_h3`` into a temporary directory in a separate process (so the timed process
starts cold: TensorFlow and every converter are imported inside the measurement).
Prints per-format conversion seconds (converter import included in each format's first
variant), the load step (TensorFlow import + SavedModel load), the whole export and the
process wall time since interpreter start.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 30.0


def _source(arg: str | None, tmp: Path) -> Path:
    if arg:
        return Path(arg)
    default = REPO / "artifacts" / "moons_h3"
    if (default / "example.json").is_file():
        return default
    subprocess.run([sys.executable, "-m", "edgekit", "train", "moons_h3", "--quick", "--out", str(tmp)],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return tmp / "moons_h3"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=None, help="example or SavedModel dir (default: moons_h3)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as td:
        tmp = Path(td)
        t0 = time.perf_counter()
        src = _source(args.source, tmp / "art")
        t_train = time.perf_counter() - t0  # quick training (if any) ran in another process
        from edgekit.export.api import export_model

        report = export_model(src, out=tmp / "exports")
        process_wall = time.perf_counter() - T_START - t_train
        manifest = json.loads(report.manifest_path.read_text())
    per_format: dict[str, dict] = {}
    for r in report.results:
        f = per_format.setdefault(r.format, {"variants": 0, "seconds": 0.0, "failed": 0, "skipped": 0})
        f["variants"] += 1
        f["seconds"] += r.seconds
        f["failed"] += r.status == "failed"
        f["skipped"] += r.status == "skipped"
    figures = {"source": str(src), "cpus": os.cpu_count(), "formats": per_format,
               "load_seconds": manifest["seconds"]["load"], "export_seconds": round(report.seconds, 2),
               "process_wall_seconds": round(process_wall, 2),
               "process_cpu_seconds": round(time.process_time(), 2),
               "budget_seconds": BUDGET_S, "ok": report.ok}
    print(f"export benchmark: {src} ({os.cpu_count()} CPUs)")
    print(f"{'step':28s} {'variants':>8s} {'seconds':>8s}")
    print(f"{'load (TF import + SavedModel)':28s} {'':>8s} {figures['load_seconds']:8.2f}")
    for name, f in per_format.items():
        note = "".join([f"  ({f['failed']} failed)" if f["failed"] else "",
                        f"  ({f['skipped']} skipped)" if f["skipped"] else ""])
        print(f"{name:28s} {f['variants']:8d} {f['seconds']:8.2f}{note}")
    print(f"{'export_model total':28s} {len(report.results):8d} {figures['export_seconds']:8.2f}")
    print(f"{'process wall (no training)':28s} {'':>8s} {figures['process_wall_seconds']:8.2f}")
    print(f"{'process CPU time':28s} {'':>8s} {figures['process_cpu_seconds']:8.2f}")
    verdict = "within" if report.seconds <= BUDGET_S else "OVER"
    print(f"{verdict} the {BUDGET_S:.0f} s budget (one process, converters imported once)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if report.ok and report.seconds <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())

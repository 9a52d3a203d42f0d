"""Run a benchmark: plan the cases, time them per thread setting, probe memory, write ``bench.json``.

Each thread setting runs in its own worker process (:mod:`edgekit.bench.worker`) so that BLAS,
OpenMP and TensorFlow thread pools can be pinned before they exist; a worker that dies (a
native crash) costs only the case it was running, which gets an ``error`` row, and a new
worker carries on with the rest. Peak RSS comes from one :mod:`edgekit.bench.rss_probe` process per
case (run with 1 thread; memory barely depends on the pool size), two probes at a time after
all timing is done so they never disturb it.

A total budget (``total_budget``, ``edgekit bench --budget``, default 240 s) bounds the run: the
cases go in :func:`tier` order (TFLite/ONNX first, the slow reference rows last), each thread
setting per tier, each case with a fair share of what is left; cases that no longer fit are
``skipped`` rows, and the RSS probes stop at the end. The parent polls the workers' result files
and prints a line per finished case with the ETA (:mod:`edgekit.bench.progress`).

``bench.json`` (schema ``edgekit.bench/1``)::

    {"schema", "edgekit_version", "created", "seconds",
     "machine": {..., "peak": {"1"|"all": {"fp32_gflops", "int8_gops", "fp32": [...], "int8": [...]}}},
     "settings": {"threads": ["1", "all"], "budget": {...}, "total_budget_s", "compare_exports", "tune",
                  "tuned": {file: tuning}, "throughput_batch": 1024, "rss": bool},
     "rows": [ROW], "checks": [CHECK]}

    ROW = {"example", "kind": "baseline"|"adapter"|"raw"|"foreign", "runner", "format", "precision",
           "backend", "label", "note", "threads": "1"|"all", "threads_used",
           "status": "ok"|"error"|"skipped", "error", "skipped": reason|null, "seconds",
           "runtime", "load_s", "latency": {"p50_ms", "p99_ms", "mean_ms", "min_ms", "calls"},
           "throughput": {"rows_per_s", "batch_ms", "calls", "batch"}, "size_bytes", "path",
           "peak_rss_bytes", "rss": {...}|null, "parity": {"status": pass|fail|error|unknown|reference,
           "metric", "metric_keras", "metric_format", "max_abs_err", ...}, "notes": [str],
           "flops", "flops_source", "gflops", "peak_gops", "pct_peak", "convert_s", "tuning",
           "paired": {"adapter_p50_ms", "raw_p50_ms", "overhead", "overhead_us", "calls"}|null,
           "delegate_partitions": XNNPACK partitions of a TFLite file (null for other rows)}
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgekit.bench import checks as bchecks
from edgekit.bench import flops as bflops
from edgekit.bench import plan
from edgekit.bench.cases import thread_env
from edgekit.bench.inputs import THROUGHPUT_ROWS
from edgekit.bench.progress import Progress
from edgekit.bench.timing import Budget
from edgekit.bench.worker import read_records
from edgekit.core.errors import UsageError
from edgekit.core.fsutil import write_json
from edgekit.core.text import tail
from edgekit.core.version import __version__

SCHEMA = "edgekit.bench/1"
NO_STDERR = "(no stderr)"
THREAD_MODES = ("1", "all")
ROW_KEYS = ("example", "kind", "runner", "format", "precision", "backend", "label", "note", "threads",
            "threads_used", "status", "error", "skipped", "seconds", "runtime", "load_s", "latency", "throughput",
            "size_bytes", "path", "peak_rss_bytes", "rss", "parity", "notes", "flops", "flops_source",
            "convert_s", "tuning", "paired", "delegate_partitions")
RSS_JOBS = 2
PROBE_TIMEOUT_S = 600
POLL_S = 0.2
#: the default total budget of ``edgekit bench`` (seconds; 0 = none).
DEFAULT_BUDGET_S = 240.0
#: share of the total budget kept for the peak-RSS probes (when they run).
RSS_SHARE = 0.15
#: share of the total budget ``--tune`` may use (at the start).
TUNE_SHARE = 0.25


def cpu_count() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_count(mode: str) -> int:
    """``"1"`` -> 1, ``"all"`` -> every usable core; anything else is a UsageError."""
    if mode == "1":
        return 1
    if mode == "all":
        return cpu_count()
    raise UsageError("unknown thread setting", got=mode, expected="1, all or both")


def _child_env(threads: int) -> dict[str, str]:
    # the workers run the installed edgekit (python -m edgekit.bench.worker): no PYTHONPATH needed
    return {**os.environ, **thread_env(threads), "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}


def tier(case: dict) -> int:
    """Run order under a budget: 0 = TFLite/ONNX adapter and raw rows and the foreign exports'
    files, 1 = the Keras/SavedModel baselines and TF.js wasm, 2 = the slow reference rows (Core ML's numpy
    evaluator, TF.js' pure-JS cpu backend). What does not fit is skipped from the end."""
    if case["format"] in ("tflite", "onnx") and case["kind"] in ("adapter", "raw", "foreign"):
        return 0
    if case["format"] == "coreml" or (case["format"] == "tfjs" and case.get("backend") == "cpu"):
        return 2
    return 1


def time_cases(cases: list[dict], threads: int, budget: Budget, work: Path,
               log: Callable[[str], None], *, deadline: float | None = None, after: int = 0,
               peak: bool = False, progress: Progress | None = None) -> dict[str, dict]:
    """Measure ``cases`` in worker processes; returns key -> {"result"}, {"error"} or {"skipped"}
    (and ``"peak"`` -> the GEMM peaks when ``peak``).

    Args:
        cases: the cases, in run order.
        threads: the thread count the worker pins.
        budget: the per-figure timing loops.
        work: scratch directory.
        log: where crash notes go.
        deadline: ``time.time()`` by which every case (these and ``after`` more) must be done
            (default None: no total budget).
        after: cases other workers run after these (their share of the budget is kept free).
        peak: measure the fp32/int8 GEMM peaks first (default False).
        progress: prints a line per finished case (default None: silent).
    """
    tag = f"t{threads}-{int(time.time() * 1e3)}"
    cases_file, out = work / f"cases-{tag}.json", work / f"results-{tag}.jsonl"
    cases_file.write_text(json.dumps(cases))
    by_key = {c["key"]: c for c in cases}
    results: dict[str, dict] = {}
    remaining = list(cases)
    seen = 0
    while remaining:
        cmd = [sys.executable, "-m", "edgekit.bench.worker", str(cases_file), str(out), "--threads", str(threads),
               "--budget", json.dumps(dataclasses.asdict(budget)), "--after", str(after)]
        cmd += ["--deadline", repr(deadline)] if deadline is not None else []
        cmd += ["--peak"] if peak else []
        err_file = work / f"stderr-{tag}.txt"
        with open(err_file, "w") as ef:  # a file, not a pipe: polled, an unread pipe could block the worker
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=ef, text=True, env=_child_env(threads))
            while True:
                rc = proc.poll()
                recs = list(read_records(str(out)))
                for rec in recs[seen:]:
                    if "key" in rec and progress is not None and rec["key"] in by_key:
                        progress.done(by_key[rec["key"]], threads, rec)
                seen = len(recs)
                if rc is not None:
                    break
                time.sleep(POLL_S)
        err = err_file.read_text(errors="replace")
        started = None
        for rec in read_records(str(out)):
            if "peak" in rec:
                results["peak"] = rec["peak"]
            elif "start" in rec:
                started = rec["start"]
            elif "key" in rec:
                results[rec["key"]] = rec
                started = None if started == rec["key"] else started
        done = set(results)
        remaining = [c for c in remaining if c["key"] not in done]
        if not remaining:
            break
        if started is None or started in done:  # died before starting anything: give up on the rest
            for c in remaining:
                results[c["key"]] = {"error": f"benchmark worker exited with {proc.returncode}: "
                                              f"{tail(err, empty=NO_STDERR)}"}
                if progress is not None:
                    progress.done(c, threads, results[c["key"]])
            break
        results[started] = {"error": f"benchmark worker crashed on this case (exit {proc.returncode}): "
                                     f"{tail(err, empty=NO_STDERR)}"}
        with open(out, "a") as fh:
            fh.write(json.dumps({"key": started, "error": results[started]["error"]}) + "\n")
        log(f"  worker crashed on {started}; restarting on the remaining cases")
        remaining = [c for c in remaining if c["key"] != started]
    return results


def probe_rss(case: dict, work: Path, threads: int = 1, deadline: float | None = None) -> dict:
    """Peak RSS of a fresh process that only loads and runs ``case`` (see :mod:`edgekit.bench.rss_probe`);
    a probe still running at ``deadline`` (a ``time.time()``; default None: none) is stopped and
    reported as skipped for the budget."""
    f = work / f"probe-{abs(hash(case['key']))}.json"
    f.write_text(json.dumps(case))
    timeout = PROBE_TIMEOUT_S if deadline is None else min(PROBE_TIMEOUT_S, deadline - time.time())
    if timeout <= 0:
        return {"skipped": "budget: no time left for the peak-RSS probe"}
    try:
        r = subprocess.run([sys.executable, "-m", "edgekit.bench.rss_probe", str(f), "--threads", str(threads)],
                           capture_output=True, text=True, env=_child_env(threads), timeout=timeout)
    except subprocess.TimeoutExpired:
        if deadline is not None and timeout < PROBE_TIMEOUT_S:
            return {"skipped": "budget: the peak-RSS probe was stopped at the end of the budget"}
        return {"error": f"rss probe timed out after {PROBE_TIMEOUT_S} s"}
    if r.returncode != 0 or not r.stdout.strip():
        return {"error": f"rss probe failed (exit {r.returncode}): {tail(r.stderr, 3, NO_STDERR)}"}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except json.JSONDecodeError:
        return {"error": f"rss probe printed no JSON: {tail(r.stdout, 2)}"}


def _row(case: dict, mode: str, threads: int, rec: dict | None, rss: dict | None) -> dict:
    row = {k: case.get(k) for k in ROW_KEYS}
    row.update(threads=mode, threads_used=None, status="error", runtime=None, load_s=None, latency=None,
               throughput=None, notes=[], rss=rss, peak_rss_bytes=(rss or {}).get("peak_rss_bytes"),
               skipped=None, seconds=(rec or {}).get("seconds"))
    if case.get("error"):
        row["error"] = case["error"]
    elif rec is None:
        row["error"] = "not measured"
    elif "skipped" in rec:
        row.update(status="skipped", error=None, skipped=rec["skipped"])
    elif "error" in rec:
        row["error"] = rec["error"]
    else:
        res = rec["result"]
        row.update(status="ok", error=None, runtime=res.get("runtime"), load_s=res.get("load_s"),
                   latency=res.get("latency"), throughput=res.get("throughput"), paired=res.get("paired"),
                   threads_used=res.get("threads_used", threads), notes=list(res.get("notes") or []))
    if case.get("note") and case["note"] not in row["notes"]:
        row["notes"].insert(0, case["note"])
    return row


def _batches(runnable: list[dict], counts: dict[str, int]) -> list[tuple[str, list[dict]]]:
    """(thread mode, cases) in run order: tier by tier (:func:`tier`), each tier in every thread setting."""
    out = []
    for t in sorted({tier(c) for c in runnable}):
        for mode in counts:
            out.append((mode, [c for c in runnable if tier(c) == t]))
    return out


def _probe_all(runnable: list[dict], work: Path, deadline: float | None, log: Callable[[str], None]) -> dict:
    """Peak RSS per case, ``RSS_JOBS`` at a time; probes not started by ``deadline`` are skipped."""
    def one(c: dict) -> dict:
        if deadline is not None and time.time() > deadline - 1.0:
            return {"skipped": "budget: no time left for the peak-RSS probe"}
        return probe_rss(c, work, deadline=deadline)

    order = sorted(runnable, key=tier)  # the light runtimes first: TensorFlow's probes are the slow ones
    log(f"probing peak RSS of {len(order)} cases ({RSS_JOBS} at a time)")
    with ThreadPoolExecutor(max_workers=RSS_JOBS) as pool:
        return {c["key"]: res for c, res in zip(order, pool.map(one, order), strict=True)}


def run(dirs: list[Path], threads: tuple[str, ...] = THREAD_MODES, budget: Budget | None = None,
        formats: list[str] | None = None, baselines: bool = True, rss: bool = True,
        log: Callable[[str], None] = print, unsafe: bool = False,
        total_budget: float | None = DEFAULT_BUDGET_S, compare_exports: bool = False, tune: bool = False) -> dict:
    """Benchmark every exported variant under ``dirs`` and return the bench.json document.

    Args:
        dirs: artifacts roots, example dirs or exports dirs.
        threads: thread settings to run, each ``"1"`` or ``"all"`` (default both).
        budget: timing budget (default ``Budget()``: >= 200 calls and >= 0.5 s per batch-1 figure).
        formats: only these export formats (default None: all; baselines always run).
        baselines: include Keras ``predict``/call and the SavedModel signature (default True).
        rss: probe each case's peak RSS in a separate process (default True).
        log: progress sink (default print): a header, then a line per case with the ETA.
        unsafe: load ``model.keras`` with ``safe_mode=False`` (default False: refused if it holds
            a Lambda layer or other arbitrary code).
        total_budget: seconds for the whole run (default ``DEFAULT_BUDGET_S`` = 240; None or 0:
            no limit). Cases run in :func:`tier` order, each with a fair share of what is left;
            those that no longer fit get ``status: "skipped"`` rows saying so.
        compare_exports: also convert each example with Keras' own ``model.export`` (litert,
            onnx) and the raw converters at their defaults, and time those files (default False;
            :mod:`edgekit.bench.baselines`; the conversions count against the budget).
        tune: first choose each TFLite/ONNX file's threads (and ONNX graph-optimisation level) by
            measurement and record them in its manifest's ``tuning`` entry, which ``edgekit.load``
            applies (default False; :mod:`edgekit.bench.tune`).

    Raises:
        EdgekitError: bad input (no manifest, unreadable reference, bad thread setting).
    """
    t0 = time.perf_counter()
    start = time.time()
    budget = budget or Budget()
    counts = {m: thread_count(m) for m in threads}
    end = start + total_budget if total_budget else None
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as td:
        work = Path(td)
        cases = plan.build([Path(d) for d in dirs], work, formats=formats, baselines=baselines,
                           unsafe=unsafe)
        if compare_exports:
            from edgekit.bench import baselines as foreign

            for ex in dict.fromkeys(c["example"] for c in cases):
                own = {c["format"]: c["path"] for c in cases if c["example"] == ex and c["kind"] == "raw"
                       and c["precision"] == "fp32" and not c.get("error")}
                for fc in foreign.cases_for([c for c in cases if c["example"] == ex], work, _child_env(1), log,
                                            formats):
                    cases.append({**fc, "pair_path": own.get(fc["format"])})
        tuned: dict[str, dict] = {}
        if tune:
            from edgekit.bench.tune import tune_cases

            log("tuning runtime settings per file (recorded in the manifests)")
            tuned = tune_cases(cases, cpu_count(), None if end is None else start + total_budget * TUNE_SHARE, log)
            for c in cases:
                if c["path"] in tuned and "options" in tuned[c["path"]] and c["kind"] == "adapter":
                    c["tuning"] = tuned[c["path"]]
        bflops.add_flops(cases)
        runnable = [c for c in cases if not c.get("error")]
        log(f"{len(cases)} cases ({len(cases) - len(runnable)} with a known error) in "
            f"{len(dict.fromkeys(c['example'] for c in cases))} examples; threads {list(counts)}; "
            + (f"budget {total_budget:.0f} s" if end else "no time budget"))
        timing_end = None if end is None else end - (total_budget * RSS_SHARE if rss else 0.0)
        batches = _batches(runnable, counts)
        progress = Progress(sum(len(b) for _, b in batches), log, timing_end)
        timed: dict[str, dict[str, dict]] = {m: {} for m in counts}
        peaks: dict[str, dict] = {}
        for i, (mode, batch) in enumerate(batches):
            after = sum(len(b) for _, b in batches[i + 1:])
            known = {k: rec["seconds"] for m in timed for k, rec in timed[m].items() if rec.get("seconds")}
            batch = [{**c, "est_s": known[c["key"]]} if c["key"] in known else c for c in batch]
            res = time_cases(batch, counts[mode], budget, work, log, deadline=timing_end, after=after,
                             peak=mode not in peaks, progress=progress)
            if "peak" in res:
                peaks[mode] = res.pop("peak")
            timed[mode].update(res)
        measured = [c for c in runnable if any("result" in timed[m].get(c["key"], {}) for m in counts)]
        probes = _probe_all(measured, work, end, log) if rss else {}
    rows = [_row(c, mode, n, timed[mode].get(c["key"]), probes.get(c["key"]))
            for mode, n in counts.items() for c in cases]
    for r in rows:
        bflops.add_rates(r, peaks)
    return {"schema": SCHEMA, "edgekit_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - t0,
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "processor": platform.processor() or platform.machine(), "cpus": cpu_count(),
                        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                        "peak": peaks},
            "settings": {"threads": list(counts), "thread_counts": counts, "budget": dataclasses.asdict(budget),
                         "total_budget_s": total_budget or None, "compare_exports": compare_exports,
                         "tune": tune, "tuned": tuned,
                         "throughput_batch": THROUGHPUT_ROWS,
                         "rss": rss, "rss_threads": 1, "dirs": [str(d) for d in dirs]},
            "rows": rows, "checks": bchecks.evaluate(rows)}


def write(doc: dict, path: Path) -> Path:
    """Write bench.json atomically."""
    write_json(Path(path), doc)
    return Path(path)


def bench(path: str | Path | list[str | Path], *, formats: list[str] | None = None,
          threads: str | tuple[str, ...] = THREAD_MODES, out: str | Path | None = None, rss: bool = True,
          baselines: bool = True, log: Callable[[str], None] | None = None,
          budget: float | None = DEFAULT_BUDGET_S, compare_exports: bool = False, tune: bool = False) -> dict:
    """Benchmark every exported variant under ``path`` (the Python API: ``edgekit.bench(...)``).

    Args:
        path: an artifacts root, an example dir or an exports dir (or a list of them).
        formats: only these formats (default None: all; the Keras/SavedModel baselines always run).
        threads: ``"1"``, ``"all"`` or both (default both).
        out: where to write bench.json (default None: nothing written).
        rss: measure each case's peak RSS in a separate process (default True).
        baselines: include the Keras and SavedModel baselines (default True).
        log: progress sink (default None: silent).
        budget: total seconds (default 240; None or 0: no limit); see :func:`run`.
        compare_exports: time Keras' own exports and the raw converters' files too (default False).
        tune: choose and record each file's runtime settings first (default False); see :func:`run`.

    Returns:
        The bench.json document (``doc["rows"]``: one row per case and thread setting).
    """
    dirs = [Path(p) for p in (path if isinstance(path, list) else [path])]
    modes = (threads,) if isinstance(threads, str) else tuple(threads)
    doc = run(dirs, threads=modes, formats=formats, baselines=baselines, rss=rss,
              log=log or (lambda _msg: None), total_budget=budget, compare_exports=compare_exports,
              tune=tune)
    if out is not None:
        write(doc, Path(out))
    return doc

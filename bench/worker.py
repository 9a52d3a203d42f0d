"""``python -m edgekit.bench.worker CASES.json OUT.jsonl --threads N --budget JSON``: time cases in one process.

Started by :mod:`edgekit.bench.run` once per thread setting, with BLAS/OpenMP/TensorFlow pinned to
``N`` threads through the environment (:func:`edgekit.bench.cases.thread_env`) before anything is
imported. For each case it appends ``{"start": key}`` and then ``{"key", "result"}`` or
``{"key", "error"}`` to OUT (flushed line by line), so a crash in a native runtime loses only
the case in progress: the parent records it as an error and restarts the worker on the rest.
Cases already finished in OUT are skipped.

With ``--deadline T`` (a ``time.time()`` value) and ``--after N`` (cases other workers still run
after this list) each case gets a fair share of what is left, ``(T - now) / (cases left + N)``:
its timing loops are cut to fit it (:func:`budget_for_share`), and a case whose share is below
``MIN_SHARE_S``, or whose ``est_s`` (its wall time with the other thread setting, set by the
parent) does not fit what is left, is not started but recorded as ``{"key", "skipped": reason}``. ``--peak`` first
measures the machine's fp32/int8 GEMM peaks with this thread count (:mod:`edgekit.bench.peak`)
and records ``{"peak": {...}}``. Every result record carries the case's wall ``seconds``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

#: a case whose fair share of the remaining budget is below this many seconds is skipped.
MIN_SHARE_S = 0.6
#: a case whose previous run (``est_s``) times this exceeds what is left (minus the others' minimum) is skipped.
EST_FIT = 0.8


def read_records(out: str):
    """The JSON records of a worker's output file, skipping a line cut short by a crash."""
    if not os.path.exists(out):
        return
    with open(out) as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def done_keys(out: str) -> set[str]:
    """Keys of the cases OUT already has a result, an error or a skip for (and ``"peak"`` once measured)."""
    return {rec["key"] for rec in read_records(out) if "key" in rec} | {
        "peak" for rec in read_records(out) if "peak" in rec}


def budget_for_share(budget, share: float):
    """``budget`` with its loops cut so one case (load, warm-up, batch 1, batch N) fits ``share`` s."""
    if share == float("inf"):
        return budget
    return dataclasses.replace(
        budget, min_time=min(budget.min_time, share * 0.25), max_time=min(budget.max_time, share * 0.3),
        warmup_time=min(budget.warmup_time, share * 0.05), min_samples=3 if share < 10 else budget.min_samples)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgekit.bench.worker")
    ap.add_argument("cases")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--budget", default="{}")
    ap.add_argument("--deadline", type=float, default=None, help="time.time() by which to finish")
    ap.add_argument("--after", type=int, default=0, help="cases still to run after this list")
    ap.add_argument("--peak", action="store_true", help="measure the fp32/int8 GEMM peaks first")
    args = ap.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from edgekit.bench import cases as bc
    from edgekit.bench.timing import Budget
    from edgekit.core.errors import EdgekitError
    from edgekit.core.text import one_line

    budget = Budget(**json.loads(args.budget))
    with open(args.cases) as fh:
        todo = json.load(fh)
    skip = done_keys(args.out)
    with open(args.out, "a") as out:
        def emit(rec: dict) -> None:
            out.write(json.dumps(rec) + "\n")
            out.flush()
            os.fsync(out.fileno())

        if args.peak and "peak" not in skip:
            from edgekit.bench import peak

            emit({"peak": peak.measure(args.threads)})
        todo = [c for c in todo if c["key"] not in skip]
        for i, case in enumerate(todo):
            left = len(todo) - i + args.after
            share = float("inf") if args.deadline is None else (args.deadline - time.time()) / left
            remaining = share * left
            est = case.get("est_s")  # its wall time in the previous thread setting, when it had one
            if share < MIN_SHARE_S or (est is not None and est * EST_FIT > remaining - (left - 1) * MIN_SHARE_S):
                why = f"budget: {max(0.0, remaining):.1f} s left for {left} cases"
                emit({"key": case["key"], "skipped": why + (f"; this one took {est:.1f} s with the other "
                                                            "thread setting" if est is not None else "")})
                continue
            emit({"start": case["key"]})
            t0 = time.perf_counter()
            try:
                rec = {"key": case["key"], "result": bc.measure(case, args.threads,
                                                                budget_for_share(budget, share))}
            except EdgekitError as exc:
                rec = {"key": case["key"], "error": str(exc)}
            except Exception as exc:  # noqa: BLE001 - any runtime failure becomes this case's error row
                rec = {"key": case["key"], "error": one_line(exc, 800)}
            emit({**rec, "seconds": time.perf_counter() - t0})
    try:
        from edgekit.runtime.tfjs import close_servers

        close_servers()
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

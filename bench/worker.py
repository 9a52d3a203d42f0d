"""``python -m edgekit.bench.worker CASES.json OUT.jsonl --threads N --budget JSON``: time cases in one process.

Started by :mod:`edgekit.bench.run` once per thread setting, with BLAS/OpenMP/TensorFlow pinned to
``N`` threads through the environment (:func:`edgekit.bench.cases.thread_env`) before anything is
imported. For each case it appends ``{"start": key}`` and then ``{"key", "result"}`` or
``{"key", "error"}`` to OUT (flushed line by line), so a crash in a native runtime loses only
the case in progress: the parent records it as an error and restarts the worker on the rest.
Cases already finished in OUT are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


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
    """Keys of the cases OUT already has a result or an error for."""
    return {rec["key"] for rec in read_records(out) if "key" in rec}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgekit.bench.worker")
    ap.add_argument("cases")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--budget", default="{}")
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

        for case in todo:
            if case["key"] in skip:
                continue
            emit({"start": case["key"]})
            try:
                emit({"key": case["key"], "result": bc.measure(case, args.threads, budget)})
            except EdgekitError as exc:
                emit({"key": case["key"], "error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - any runtime failure becomes this case's error row
                emit({"key": case["key"], "error": one_line(exc, 800)})
    try:
        from edgekit.runtime.tfjs import close_servers

        close_servers()
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

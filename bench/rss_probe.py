"""``python -m edgekit.bench.rss_probe CASE.json --threads N``: peak RSS of a process that only runs one model.

The probe loads the case (nothing else is imported beyond what that case needs: numpy, the
runtime, edgekit's adapter for adapter rows, TensorFlow only for the baselines), runs it at
batch 1 five times and at batch N once, and prints one JSON line::

    {"self_kb": int, "children_kb": int, "peak_rss_bytes": int, "what": str}

``self_kb`` is ``getrusage(RUSAGE_SELF).ru_maxrss``; ``children_kb`` is
``RUSAGE_CHILDREN`` after the TF.js Node process has exited (the adapter's shared Node
server is closed first, so it is counted). For TF.js adapter rows the figure is Python +
Node; for raw TF.js rows it is Node alone (Node's own ``maxRSS``), as a Node app would run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgekit.bench.rss_probe")
    ap.add_argument("case")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with open(args.case) as fh:
        case = json.load(fh)
    if case["runner"] == "raw" and case["format"] == "tfjs":
        from edgekit.bench.tfjs_raw import run_node
        from edgekit.bench.timing import Budget

        reply = run_node(case, Budget(), mode="rss")
        kb = int(reply["maxrss_kb"])
        print(json.dumps({"self_kb": None, "children_kb": kb, "peak_rss_bytes": kb * 1024,
                          "what": "node process alone"}))
        return 0
    from edgekit.bench.cases import run_once

    run_once(case, args.threads)
    what = "python process"
    if case["format"] == "tfjs":
        from edgekit.runtime.tfjs import close_servers

        close_servers()
        what = "python process + node process"
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    total = self_kb + (child_kb if case["format"] == "tfjs" else 0)
    print(json.dumps({"self_kb": self_kb, "children_kb": child_kb, "peak_rss_bytes": total * 1024, "what": what}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

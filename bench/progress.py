"""Progress of a benchmark run: one line per finished case, with the elapsed time and an ETA.

Example line (on stderr from ``edgekit bench``)::

    [  7/44 0:12 ETA 1:05] t=1 mobilenet_v2 tflite int8 raw: p50 0.2901 ms, 1.9 s

The ETA is the mean wall time of the cases done so far times the cases left, capped by what is
left of the total budget (the run never plans past it: cases that do not fit are skipped).
"""

from __future__ import annotations

import time
from typing import Callable


def clock(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3700`` -> ``1:01:40``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def case_name(case: dict) -> str:
    """``mobilenet_v2 tflite int8 raw``, ``and_gate tfjs fp32 adapter (wasm)``, ``and_gate keras.call``."""
    if case["kind"] == "baseline":
        return f"{case['example']} {case['runner']}"
    tag = f" ({case['backend']})" if case.get("backend") else ""
    what = case["runner"] if case["kind"] == "foreign" else case["kind"]
    return f"{case['example']} {case['format']} {case['precision']} {what}{tag}"


class Progress:
    """Counts finished cases and prints a line for each.

    Args:
        total: cases to run (every thread setting counted).
        log: the line sink (e.g. a stderr printer).
        deadline: ``time.time()`` of the end of the budget (default None: no budget).
    """

    def __init__(self, total: int, log: Callable[[str], None], deadline: float | None = None):
        self.total, self.log, self.deadline = total, log, deadline
        self.count = 0
        self.skipped = 0
        self.start = time.time()

    def eta(self) -> float:
        """Seconds the remaining cases are expected to take."""
        now = time.time()
        left = self.total - self.count
        ran = self.count - self.skipped
        est = (now - self.start) / ran * left if ran else float("nan")
        if self.deadline is not None:
            est = min(est, max(0.0, self.deadline - now)) if est == est else max(0.0, self.deadline - now)
        return est

    def done(self, case: dict, threads: int, rec: dict) -> None:
        """One case finished (``rec``: the worker's record: result, error or skipped)."""
        self.count += 1
        if "skipped" in rec:
            self.skipped += 1
            what = f"skipped ({rec['skipped']})"
        elif "error" in rec:
            what = "error: " + str(rec["error"])[:100]
        else:
            p50 = ((rec.get("result") or {}).get("latency") or {}).get("p50_ms")
            what = "ok" if p50 is None else f"p50 {p50:.4f} ms" if p50 < 1 else f"p50 {p50:.2f} ms"
        secs = f", {rec['seconds']:.1f} s" if rec.get("seconds") is not None else ""
        eta = self.eta()
        width = len(str(self.total))
        self.log(f"[{self.count:>{width}}/{self.total} {clock(time.time() - self.start)} "
                 f"ETA {'?' if eta != eta else clock(eta)}] t={threads} {case_name(case)}: {what}{secs}")

"""Timing primitives: warm-up, time-boxed repetitions, percentiles and throughput.

Every figure is wall-clock time (``time.perf_counter_ns``) around one whole call, measured
after a warm-up; the loop stops once it has both ``repeat`` samples and ``min_time`` seconds
(so a 10 µs call gets tens of thousands of samples and a 40 ms call gets ``repeat``), and
never runs past ``max_time`` once it has a minimum of samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

#: most samples kept per measurement (the loop stops there even if min_time is not reached).
MAX_SAMPLES = 50_000
#: samples a measurement needs before ``max_time`` may cut it short.
MIN_SAMPLES = 5


@dataclass(frozen=True)
class Budget:
    """How long to measure.

    Args:
        repeat: at least this many timed calls at batch 1 (default 200).
        min_time: and at least this many seconds of timed calls at batch 1 (default 0.5).
        max_time: stop after this many seconds once ``MIN_SAMPLES`` are in (default 20.0).
        warmup: untimed calls first (default 10), plus untimed calls for ``warmup_time``
            seconds (default 0.1) so lazily compiled paths and caches settle.
        throughput_repeat: timed calls at the large batch (default 5; time-boxed by
            ``min_time / 2`` like the batch-1 loop).
    """

    repeat: int = 200
    min_time: float = 0.5
    max_time: float = 20.0
    warmup: int = 10
    warmup_time: float = 0.1
    throughput_repeat: int = 5


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of an ascending list (numpy's default)."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def sample(fn: Callable[[], object], repeat: int, min_time: float, max_time: float) -> list[float]:
    """Call ``fn`` until ``repeat`` samples and ``min_time`` seconds; return seconds per call."""
    out: list[float] = []
    clock = time.perf_counter_ns
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        out.append((t1 - t0) * 1e-9)
        elapsed = (t1 - start) * 1e-9
        n = len(out)
        if n >= MAX_SAMPLES or (n >= repeat and elapsed >= min_time):
            break
        if elapsed >= max_time and n >= MIN_SAMPLES:
            break
    return out


def warm_up(fn: Callable[[], object], calls: int, seconds: float) -> None:
    """Untimed calls: ``calls`` of them, then more until ``seconds`` have passed."""
    for _ in range(max(1, calls)):
        fn()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fn()


def latency(fn: Callable[[], object], budget: Budget) -> dict:
    """Warm up, then time ``fn``; returns ``{"p50_ms", "p99_ms", "mean_ms", "min_ms", "calls"}``."""
    warm_up(fn, budget.warmup, budget.warmup_time)
    s = sorted(sample(fn, budget.repeat, budget.min_time, budget.max_time))
    return {"p50_ms": percentile(s, 50) * 1e3, "p99_ms": percentile(s, 99) * 1e3,
            "mean_ms": sum(s) / len(s) * 1e3, "min_ms": s[0] * 1e3, "calls": len(s)}


def throughput(fn: Callable[[], object], rows: int, budget: Budget) -> dict:
    """Rows per second of ``fn`` on a ``rows``-row batch (median call time, after a warm-up)."""
    warm_up(fn, 2, budget.warmup_time)
    s = sorted(sample(fn, budget.throughput_repeat, budget.min_time / 2, budget.max_time))
    med = percentile(s, 50)
    return {"rows_per_s": rows / med if med > 0 else None, "batch_ms": med * 1e3, "calls": len(s),
            "batch": rows}

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
#: a throughput call (batch N) aims at about this many seconds (see :func:`throughput_rows`).
THROUGHPUT_CALL_S = 0.25


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
        min_samples: samples a loop needs before ``max_time`` may cut it short (default
            ``MIN_SAMPLES`` = 5; the total ``--budget`` lowers it to 3 for slow cases).
        throughput_call_s: the batch-N call aims at about this many seconds (default 0.25).
    """

    repeat: int = 200
    min_time: float = 0.5
    max_time: float = 20.0
    warmup: int = 10
    warmup_time: float = 0.1
    throughput_repeat: int = 5
    min_samples: int = MIN_SAMPLES
    throughput_call_s: float = THROUGHPUT_CALL_S


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of an ascending list (numpy's default)."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def sample(fn: Callable[[], object], repeat: int, min_time: float, max_time: float,
           min_samples: int = MIN_SAMPLES) -> list[float]:
    """Call ``fn`` until ``repeat`` samples and ``min_time`` seconds; return seconds per call.

    Stops at ``max_time`` once it has ``min_samples`` (default ``MIN_SAMPLES``) samples.
    """
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
        if elapsed >= max_time and n >= min_samples:
            break
    return out


def warm_up(fn: Callable[[], object], calls: int, seconds: float, cap: float | None = None) -> None:
    """Untimed calls: ``calls`` of them, then more until ``seconds`` have passed.

    Args:
        fn: the call.
        calls: at least 1 call; up to ``calls`` while within ``cap``.
        seconds: then keep calling until this many seconds have passed.
        cap: stop after this many seconds once one call is done (default None: no cap), so a
            1-second call is not warmed up ten times.
    """
    start = time.perf_counter()
    for _ in range(max(1, calls)):
        fn()
        if cap is not None and time.perf_counter() - start >= cap:
            return
    end = start + seconds
    while time.perf_counter() < end:
        fn()


def alternating(calls: dict[str, Callable[[], object]], min_time: float, max_time: float, block: int = 10,
                min_blocks: int = 3, max_samples: int | None = MAX_SAMPLES) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument call, timed in alternating blocks of ``block`` calls:
    at least ``min_blocks`` rounds, then rounds until ``min_time`` (and while under ``max_time`` and
    ``max_samples`` per call). Load from elsewhere hits every call alike (paired comparisons)."""
    samples: dict[str, list[float]] = {k: [] for k in calls}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_blocks or (time.perf_counter() - start < min_time and time.perf_counter() - start < max_time
                                  and (max_samples is None or min(map(len, samples.values())) < max_samples)):
        for k, fn in calls.items():
            samples[k] += sample(fn, block, 0.0, max_time, 1)
        rounds += 1
    return samples


def throughput_rows(p50_s: float, most: int, call_s: float = THROUGHPUT_CALL_S) -> int:
    """The throughput batch: the largest power of two <= ``most`` whose call takes about ``call_s``
    seconds at ``p50_s`` per row (at least 1), so a 6 ms model gets batch 32, not 1024."""
    if p50_s <= 0:
        return most
    rows = 1
    while rows * 2 <= most and rows * 2 * p50_s <= call_s:
        rows *= 2
    return rows


def latency(fn: Callable[[], object], budget: Budget) -> dict:
    """Warm up, then time ``fn``; returns ``{"p50_ms", "p99_ms", "mean_ms", "min_ms", "calls"}``."""
    warm_up(fn, budget.warmup, budget.warmup_time, cap=budget.max_time / 4)
    s = sorted(sample(fn, budget.repeat, budget.min_time, budget.max_time, budget.min_samples))
    return {"p50_ms": percentile(s, 50) * 1e3, "p99_ms": percentile(s, 99) * 1e3,
            "mean_ms": sum(s) / len(s) * 1e3, "min_ms": s[0] * 1e3, "calls": len(s)}


def throughput(fn: Callable[[], object], rows: int, budget: Budget) -> dict:
    """Rows per second of ``fn`` on a ``rows``-row batch (median call time, after a warm-up)."""
    warm_up(fn, 2, budget.warmup_time, cap=budget.max_time / 4)
    s = sorted(sample(fn, budget.throughput_repeat, budget.min_time / 2, budget.max_time, budget.min_samples))
    med = percentile(s, 50)
    return {"rows_per_s": rows / med if med > 0 else None, "batch_ms": med * 1e3, "calls": len(s),
            "batch": rows}

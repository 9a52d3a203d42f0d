"""Train a selection of examples into ``<out>/<example>/``, atomically, with progress and a summary."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit.core.errors import OutputError
from edgekit.core.fsutil import atomic_dir, clean_stale_tmp, ensure_writable_dir
from edgekit.train.registry import GROUP_HOOKS, Example


@dataclass
class Outcome:
    name: str
    metric: str
    value: float
    seconds: float
    quality: str
    path: Path
    met: bool | None = None   # the quality bar, after a full run (None: no bar, or --quick)


class Progress:
    """Per-example progress: a redrawn bar on a terminal, else at most five lines per example."""

    def __init__(self, name: str, stream=sys.stdout):
        self.name = name
        self.stream = stream
        self.tty = stream.isatty()
        self.next_pct = 25
        self.t0 = time.perf_counter()

    def __call__(self, epoch: int, epochs: int, loss: float) -> None:
        pct = 100 * epoch // max(epochs, 1)
        if self.tty:
            bar = "#" * (pct // 5)
            self.stream.write(f"\r  {self.name:<18} [{bar:<20}] {epoch:>5}/{epochs} loss {loss:.4g}")
            if epoch >= epochs:
                self.stream.write("\n")
            self.stream.flush()
        elif pct >= self.next_pct:
            self.stream.write(f"  {self.name:<18} epoch {epoch:>5}/{epochs} loss {loss:.4g} "
                              f"({time.perf_counter() - self.t0:.1f}s)\n")
            self.stream.flush()
            while self.next_pct <= pct:
                self.next_pct += 25


def check_out(out: Path, examples: list[Example]) -> Path:
    """Refuse an out dir that is a file, unwritable, or whose example dirs hold foreign content."""
    out = ensure_writable_dir(Path(out))
    for ex in examples:
        d = out / ex.name
        if d.exists() and (not d.is_dir() or (any(d.iterdir()) and not (d / "example.json").exists())):
            raise OutputError("output location is occupied by something that is not an edgekit example",
                              got=str(d), expected="a new directory, or one edgekit wrote before")
    return out


def train_examples(examples: list[Example], out: Path, seed: int = 0, quick: bool = False,
                   log=print, jobs: int = 1) -> list[Outcome]:
    """Train ``examples``; each lands in ``out/<name>`` only if it completes.

    Args:
        examples: the registry entries to train.
        out: the artifacts directory (created if needed).
        seed: global seed (default 0).
        quick: a few epochs each, for tests (default False).
        log: where progress lines go (default print).
        jobs: worker processes (default 1: in this process). With 2+, examples are
            spread over spawned workers by their cost estimate (the grid search alone
            weighs about as much as everything else).
    """
    out = check_out(out, examples)
    clean_stale_tmp(out)
    t_all = time.perf_counter()
    jobs = max(1, min(jobs, len(examples)))
    if jobs == 1:
        outcomes = _train_list(examples, out, seed, quick, log)
    else:
        outcomes = _train_parallel(examples, out, seed, quick, log, jobs)
    trained = {o.name for o in outcomes}
    for group, hook in GROUP_HOOKS.items():
        members = [ex.name for ex in examples if ex.group == group and ex.name in trained]
        if len(members) > 1:
            path = hook(out, members)
            log(f"{group}: wrote {path}")
    total = time.perf_counter() - t_all
    summary = [{"example": o.name, "metric": o.metric, "value": o.value, "seconds": round(o.seconds, 2),
                "quality_bar": o.quality, "quality_met": o.met} for o in outcomes]
    (out / "train_summary.json").write_text(json.dumps({"total_seconds": round(total, 2), "quick": quick,
                                                        "seed": seed, "jobs": jobs,
                                                        "examples": summary}, indent=2) + "\n")
    log(format_summary(outcomes, total))
    return outcomes


def _train_list(examples: list[Example], out: Path, seed: int, quick: bool, log, tag: str = "") -> list[Outcome]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from edgekit.train.common import _quiet  # imports numpy only

    outcomes: list[Outcome] = []
    # TensorFlow's C++ chatter (CUDA probing, XLA service lines) goes to <out>/train.log, not the
    # terminal; progress goes to stdout, errors still reach the user as exceptions.
    with _quiet(out / "train.log"):
        _quiet_tensorflow()
        for i, ex in enumerate(examples, 1):
            outcomes.append(_train_one(ex, i, len(examples), out, seed, quick, log, tag))
    return outcomes


def _train_one(ex: Example, i: int, total: int, out: Path, seed: int, quick: bool, log, tag: str) -> Outcome:
    from edgekit.train.common import TrainContext, write_artifact

    log(f"{tag}[{i}/{total}] {ex.name}: {ex.summary}")
    t0 = time.perf_counter()
    with atomic_dir(out / ex.name) as tmp:
        ctx = TrainContext(dir=tmp, seed=seed, quick=quick, progress=Progress(ex.name), log=log)
        result = ex.fn(ctx, **ex.params)
        write_artifact(ctx, ex.name, result, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    met = None if quick or ex.passes is None else bool(ex.passes(result.metrics))
    _clear_session()
    return Outcome(ex.name, result.headline[0], float(result.headline[1]), seconds, ex.quality,
                   out / ex.name, met)


def _worker(names: list[str], out: str, seed: int, quick: bool, tag: str) -> list[Outcome]:
    from edgekit.train.registry import select

    def log(msg: str) -> None:
        print(msg, flush=True)

    return _train_list(select(names), Path(out), seed, quick, log, tag)


def _train_parallel(examples: list[Example], out: Path, seed: int, quick: bool, log, jobs: int) -> list[Outcome]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    bins: list[list[Example]] = [[] for _ in range(jobs)]
    loads = [0.0] * jobs
    for ex in sorted(examples, key=lambda e: -e.cost):  # longest first onto the lightest worker
        k = loads.index(min(loads))
        bins[k].append(ex)
        loads[k] += ex.cost
    order = {ex.name: i for i, ex in enumerate(examples)}
    log(f"training {len(examples)} example(s) in {jobs} worker processes")
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_worker, [e.name for e in b], str(out), seed, quick, f"w{k} ")
                   for k, b in enumerate(bins) if b]
        outcomes = [o for f in futures for o in f.result()]
    return sorted(outcomes, key=lambda o: order[o.name])


def _quiet_tensorflow() -> None:
    """Keep the progress readable: no retracing warnings (each fit compiles its own epochs on purpose)."""
    import logging

    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)


def _clear_session() -> None:
    import keras

    keras.backend.clear_session(free_memory=True)


def format_summary(outcomes: list[Outcome], total: float) -> str:
    """The summary table: example, metric, value, seconds, quality bar and whether it was met."""
    def value(v: float) -> str:
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"

    def met(o: Outcome) -> str:
        return "-" if o.met is None else ("yes" if o.met else "NO")

    from edgekit.core.table import render

    rows = [(o.name, o.metric, value(o.value), f"{o.seconds:.1f}", o.quality or "-", met(o)) for o in outcomes]
    lines = [render(("example", "metric", "value", "seconds", "quality bar", "met"), rows, right=(2, 3))]
    missed = [o.name for o in outcomes if o.met is False]
    lines.append(f"total {total:.1f}s for {len(outcomes)} example(s)"
                 + (f"; quality bar MISSED by {', '.join(missed)}" if missed else ""))
    return "\n".join(lines)

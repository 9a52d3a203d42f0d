"""Train a selection of examples into ``<out>/<example>/``, atomically, with progress and a summary."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import OutputError
from edgekit.fsutil import atomic_dir, clean_stale_tmp, ensure_writable_dir
from train.registry import GROUP_HOOKS, Example


@dataclass
class Outcome:
    name: str
    metric: str
    value: float
    seconds: float
    quality: str
    path: Path


class Progress:
    """Per-example progress: a redrawn bar on a terminal, else at most five lines per example."""

    def __init__(self, name: str, stream=sys.stderr):
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
                   log=print) -> list[Outcome]:
    """Train ``examples`` in order; each lands in ``out/<name>`` only if it completes.

    Args:
        examples: the registry entries to train.
        out: the artifacts directory (created if needed).
        seed: global seed (default 0).
        quick: a few epochs each, for tests (default False).
        log: where progress lines go (default print).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    out = check_out(out, examples)
    clean_stale_tmp(out)
    from train.common import TrainContext, write_artifact  # imports numpy only

    _quiet_tensorflow()

    outcomes: list[Outcome] = []
    t_all = time.perf_counter()
    for i, ex in enumerate(examples, 1):
        log(f"[{i}/{len(examples)}] {ex.name}: {ex.summary}")
        t0 = time.perf_counter()
        with atomic_dir(out / ex.name) as tmp:
            ctx = TrainContext(dir=tmp, seed=seed, quick=quick, progress=Progress(ex.name), log=log)
            result = ex.fn(ctx, **ex.params)
            seconds = time.perf_counter() - t0
            write_artifact(ctx, ex.name, result, seconds)
        seconds = time.perf_counter() - t0
        outcomes.append(Outcome(ex.name, result.headline[0], float(result.headline[1]), seconds,
                                ex.quality, out / ex.name))
        _clear_session()
    trained = {o.name for o in outcomes}
    for group, hook in GROUP_HOOKS.items():
        members = [ex.name for ex in examples if ex.group == group and ex.name in trained]
        if len(members) > 1:
            path = hook(out, members)
            log(f"{group}: wrote {path}")
    total = time.perf_counter() - t_all
    summary = [{"example": o.name, "metric": o.metric, "value": o.value, "seconds": round(o.seconds, 2),
                "quality_bar": o.quality} for o in outcomes]
    (out / "train_summary.json").write_text(json.dumps({"total_seconds": round(total, 2), "quick": quick,
                                                        "seed": seed, "examples": summary}, indent=2) + "\n")
    log(format_summary(outcomes, total))
    return outcomes


def _quiet_tensorflow() -> None:
    """Keep the progress readable: no retracing warnings (each fit compiles its own epochs on purpose)."""
    import logging

    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)


def _clear_session() -> None:
    import keras

    keras.backend.clear_session(free_memory=True)


def format_summary(outcomes: list[Outcome], total: float) -> str:
    rows = [("example", "metric", "value", "seconds")]
    rows += [(o.name, o.metric, f"{o.value:.4f}" if abs(o.value) >= 1e-3 or o.value == 0 else f"{o.value:.2e}",
              f"{o.seconds:.1f}") for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"total {total:.1f}s for {len(outcomes)} example(s)")
    return "\n".join(lines)

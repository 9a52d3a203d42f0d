"""Train a selection of examples into ``<out>/<example>/``, atomically, with progress and a summary."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from edgekit.core.errors import OutputError
from edgekit.core.fsutil import atomic_dir, clean_stale_tmp, ensure_writable_dir, write_json
from edgekit.train.backends import Plan, check_plan, keras_already_imported_as, worker_env
from edgekit.train.registry import GROUP_HOOKS, GROUP_PREFITS, Example


@dataclass
class Outcome:
    name: str
    metric: str
    value: float
    seconds: float
    quality: str
    path: Path
    met: bool | None = None   # the quality bar, after a full run (None: no bar, or --quick)
    weights_sha256: str = ""  # of the trained weights (multi-worker: every worker's must match)


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
                   log=print, jobs: int = 1, plan: Plan | None = None,
                   explicit: tuple[str, ...] | list[str] = ()) -> list[Outcome]:
    """Train ``examples``; each lands in ``out/<name>`` only if it completes.

    Args:
        examples: the registry entries to train.
        out: the artifacts directory (created if needed).
        seed: global seed (default 0).
        quick: a few epochs each, for tests (default False).
        log: where progress lines go (default print).
        jobs: worker processes (default 1). With 2+, examples are spread over spawned workers
            by their cost estimate (the grid search alone weighs about as much as everything else).
            A backend other than the one Keras already runs here, or a distributed plan, always
            trains in worker processes (Keras picks its backend once per process).
        plan: backend and distribution (default: TensorFlow, single device, the fast path).
        explicit: names the user typed; with a distributed plan, such an example that cannot be
            distributed is an error, while one that came from ``all`` or a group is skipped
            with a note (default none).

    Raises:
        UsageError, DependencyError: a bad plan, or an explicitly named example it cannot run (exit 2).
        RuntimeFailure: a worker process died; the others were stopped (exit 1).
    """
    plan = check_plan(plan or Plan())
    examples = _distributable(examples, plan, explicit, log)
    out = check_out(out, examples)
    clean_stale_tmp(out)
    t_all = time.perf_counter()
    jobs = max(1, min(jobs, len(examples)))
    hooked: dict[str, str] = {}  # group -> figure path, for hooks a worker already ran
    if plan.distribute == "multiworker":
        from edgekit.train.multiworker import train_multiworker

        jobs = plan.replicas
        outcomes = train_multiworker(examples, out, seed, quick, log, plan)
    elif _in_process(plan, jobs):
        outcomes = _train_list(examples, out, seed, quick, log, plan=plan)
    else:
        outcomes, hooked = _train_parallel(examples, out, seed, quick, log, jobs, plan)
    trained = {o.name for o in outcomes}
    for group, path in hooked.items():
        log(f"{group}: wrote {path}")
    for group, hook in GROUP_HOOKS.items():
        members = [ex.name for ex in examples if ex.group == group and ex.name in trained]
        if len(members) > 1 and group not in hooked:
            path = _run_hook(hook, out, members, plan)
            log(f"{group}: wrote {path}")
    total = time.perf_counter() - t_all
    summary = [{"example": o.name, "metric": o.metric, "value": o.value, "seconds": round(o.seconds, 2),
                "quality_bar": o.quality, "quality_met": o.met} for o in outcomes]
    write_json(out / "train_summary.json", {"total_seconds": round(total, 2), "quick": quick, "seed": seed,
                                            "jobs": jobs, **plan.describe(), "examples": summary})
    log(format_summary(outcomes, total, plan))
    return outcomes


def _in_process(plan: Plan, jobs: int) -> bool:
    """Train here (no worker) when one job suffices and this process can run the plan's backend.

    Keras picks its backend at import: if it is not imported yet, the plan's environment is set
    now; if it is, it must be the plan's backend. Mirrored, multi-worker and data-parallel runs
    configure devices before TensorFlow/JAX start, so they always get fresh worker processes.
    """
    if jobs != 1 or plan.distribute not in (None, "single"):
        return False
    imported = keras_already_imported_as(plan.backend)
    if imported is None:  # Keras reads KERAS_BACKEND when it is first imported: from here on
        os.environ.update(worker_env(plan))
        return True
    return imported


def _distributable(examples: list[Example], plan: Plan, explicit, log) -> list[Example]:
    """The examples ``plan`` can train: refuse a named one that cannot split, skip others with a note."""
    if plan.distribute is None:
        return examples
    from edgekit.core.errors import UsageError
    from edgekit.train.distribute import check_split

    keep, skipped = [], []
    for ex in examples:
        try:
            if ex.fit_rows is None:
                raise UsageError(f"{ex.name} cannot train distributed ({ex.not_distributable})",
                                 expected="an example trained by one fit (gates, moons, regression_linear, "
                                          "regression_deep, regression_mlp)")
            check_split(ex.name, ex.fit_rows, ex.batch_size, plan.n_replicas)
            keep.append(ex)
        except UsageError as exc:
            if ex.name in explicit:
                raise
            skipped.append(f"{ex.name} ({exc.what.split(': ', 1)[-1]})")
    if skipped:
        log(f"--distribute {plan.distribute}: skipping {len(skipped)} example(s): {'; '.join(skipped)}")
    if not keep:
        raise UsageError(f"none of the selected examples can train with --distribute {plan.distribute}",
                         got=", ".join(ex.name for ex in examples), expected="gates, moons or regression_linear")
    return keep


def _train_list(examples: list[Example], out: Path, seed: int, quick: bool, log, tag: str = "",
                plan: Plan | None = None, chief: bool = True) -> list[Outcome]:
    """Train ``examples`` one after another in this process (a worker's whole job)."""
    plan = plan or Plan()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", plan.backend)
    from edgekit.train.common import _quiet  # imports numpy only

    outcomes: list[Outcome] = []
    # TensorFlow's C++ chatter (CUDA probing, XLA service lines) goes to <out>/train.log, not the
    # terminal; progress goes to stdout, errors still reach the user as exceptions.
    with _quiet(out / "train.log"):
        if plan.backend == "tensorflow":
            _quiet_tensorflow()
        from edgekit.train import distribute
        from edgekit.train.tf_export import TFExporter

        distribute.activate(plan)
        tf_here = plan.backend == "tensorflow" and plan.distribute in (None, "single")
        exporter = None if tf_here or not chief else TFExporter(out / "train.log")
        shares: dict[str, float] = {}  # example -> its share of a group prefit's seconds
        try:
            for i, ex in enumerate(examples, 1):
                if ex.group in GROUP_PREFITS and ex.name not in shares and _prefits(plan):
                    shares.update(_prefit(ex.group, [e for e in examples if e.group == ex.group], seed, quick,
                                          log, tag, chief))
                o = _train_one(ex, i, len(examples), out, seed, quick, log, tag, plan, exporter, chief)
                outcomes.append(replace(o, seconds=o.seconds + shares.get(ex.name, 0.0)))
        finally:
            distribute.deactivate()
            if exporter is not None:
                exporter.close()
    return outcomes


def _prefits(plan: Plan) -> bool:
    """Group prefits stack several fits in one program: a plain single-device run only."""
    return plan.distribute in (None, "single")


def _prefit(group: str, members: list[Example], seed: int, quick: bool, log, tag: str, chief: bool) -> dict:
    """Run ``group``'s prefit for ``members`` (2 or more); return each member's share of its seconds."""
    if len(members) < 2:
        return {members[0].name: 0.0}
    fn, _ = GROUP_PREFITS[group]
    t0 = time.perf_counter()
    log(f"{tag}{group}: training {len(members)} models together ({', '.join(e.name for e in members)})")
    fn(members, seed, quick, Progress(f"{group} x{len(members)}") if chief else None)
    seconds = time.perf_counter() - t0
    return {e.name: seconds / len(members) for e in members}


def _train_one(ex: Example, i: int, total: int, out: Path, seed: int, quick: bool, log, tag: str,
               plan: Plan, exporter, chief: bool = True) -> Outcome:
    from edgekit.train import distribute
    from edgekit.train.common import TrainContext, write_artifact

    log(f"{tag}[{i}/{total}] {ex.name}: {ex.summary}")
    t0 = time.perf_counter()
    with atomic_dir(out / ex.name) as tmp:
        ctx = TrainContext(dir=tmp, seed=seed, quick=quick, progress=Progress(ex.name) if chief else None,
                           log=log, exporter=exporter, plan=plan.describe())
        with distribute.scope():
            result = ex.fn(ctx, **ex.params)
        digest = weights_digest(result.model)
        if chief:
            write_artifact(ctx, ex.name, result, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    met = None if quick or ex.passes is None else bool(ex.passes(result.metrics))
    _clear_session()
    return Outcome(ex.name, result.headline[0], float(result.headline[1]), seconds, ex.quality,
                   out / ex.name, met, digest)


def weights_digest(model) -> str:
    """sha256 over the model's weights (float32 bytes, in order): equal digests, identical weights."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w, np.float32).tobytes())
    return h.hexdigest()


def _init_worker(env: dict) -> None:
    """Pool initializer: the backend and XLA flags go into the environment before Keras is imported."""
    os.environ.update(env)


def _worker(names: list[str], out: str, seed: int, quick: bool, tag: str, plan: dict,
            hooks: tuple[str, ...] = ()) -> tuple[list[Outcome], dict[str, str]]:
    """Train ``names`` here, then run the group hooks of ``hooks`` (groups whose members all trained here)."""
    from edgekit.train.registry import select

    def log(msg: str) -> None:
        print(msg, flush=True)

    examples = select(names)
    outcomes = _train_list(examples, Path(out), seed, quick, log, tag, Plan(**plan))
    done = {}
    for group in hooks:
        members = [ex.name for ex in examples if ex.group == group]
        if len(members) > 1:
            done[group] = str(_run_hook(GROUP_HOOKS[group], Path(out), members, Plan(**plan)))
    return outcomes, done


def _train_parallel(examples: list[Example], out: Path, seed: int, quick: bool, log, jobs: int,
                    plan: Plan) -> tuple[list[Outcome], dict[str, str]]:
    """Train ``examples`` in ``jobs`` spawned workers; return the outcomes and the group hooks the workers ran."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from edgekit.core.errors import RuntimeFailure

    bins: list[list[Example]] = [[] for _ in range(jobs)]
    hooks: list[list[str]] = [[] for _ in range(jobs)]
    loads = [0.0] * jobs
    for unit, cost, group in sorted(_units(examples, plan), key=lambda u: -u[1]):  # longest first, lightest worker
        k = loads.index(min(loads))
        bins[k].extend(unit)
        loads[k] += cost
        if group in GROUP_HOOKS:
            hooks[k].append(group)
    order = {ex.name: i for i, ex in enumerate(examples)}
    log(f"training {len(examples)} example(s) in {jobs} worker process(es), backend {plan.backend}"
        + (f", --distribute {plan.distribute} over {plan.n_replicas} replica(s)" if plan.distribute else ""))
    pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=({**_one_thread_each(jobs), **worker_env(plan)},))
    procs: list = []
    try:
        futures = [pool.submit(_worker, [e.name for e in b], str(out), seed, quick, f"w{k} ", asdict(plan),
                               tuple(hooks[k])) for k, b in enumerate(bins) if b]
        procs = list(pool._processes.values())  # all started by the submits (max_workers=jobs)
        results = [f.result() for f in futures]
        outcomes = [o for r in results for o in r[0]]
        hooked = {g: p for r in results for g, p in r[1].items()}
    except BrokenProcessPool as exc:
        raise RuntimeFailure("a training worker process died; the other workers were stopped and no "
                             "unfinished example was written", got=str(exc) or "BrokenProcessPool",
                             expected="see <out>/train.log") from None
    except BaseException:
        for p in procs:  # stop the others now, not after their work
            p.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for p in procs:  # reap them: a zombie's pid still looks alive to clean_stale_tmp
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        clean_stale_tmp(out)
    return sorted(outcomes, key=lambda o: order[o.name]), hooked


def _one_thread_each(jobs: int) -> dict[str, str]:
    """TensorFlow on one intra-op thread per worker when the workers fill every core (unless the user set it).

    Two workers with two threads each on two cores contend: the stacked grid search ran 13.6-13.9 s
    with one thread and 14.9-18.3 s with two beside a busy core (same results; op determinism is on).
    """
    if jobs < (os.cpu_count() or 1) or "TF_NUM_INTRAOP_THREADS" in os.environ:
        return {}
    return {"TF_NUM_INTRAOP_THREADS": "1"}


def _units(examples: list[Example], plan: Plan) -> list[tuple[list[Example], float, str | None]]:
    """``(examples, cost, group)`` scheduling units: a group with a prefit (2+ members) is one unit."""
    units: list[tuple[list[Example], float, str | None]] = []
    bundles: dict[str, list[Example]] = {}
    for ex in examples:
        if ex.group in GROUP_PREFITS and _prefits(plan) and sum(e.group == ex.group for e in examples) > 1:
            bundles.setdefault(ex.group, []).append(ex)
        else:
            units.append(([ex], ex.cost, None))
    for group, members in bundles.items():
        units.append((members, GROUP_PREFITS[group][1] + sum(e.cost for e in members), group))
    return units


def _run_hook(hook, out: Path, members: list[str], plan: Plan):
    """Group hooks (the sweep figure) read model.keras, which loads on any backend: run them here."""
    return hook(out, members)


def _quiet_tensorflow() -> None:
    """Keep the progress readable: no retracing warnings (each fit compiles its own epochs on purpose)."""
    import logging

    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)


def _clear_session() -> None:
    import keras

    keras.backend.clear_session(free_memory=False)  # True adds a gc.collect(): ~0.2 s per example for KBs


def format_summary(outcomes: list[Outcome], total: float, plan: Plan | None = None) -> str:
    """The summary table: example, metric, value, seconds, quality bar and whether it was met."""
    def value(v: float) -> str:
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"

    def met(o: Outcome) -> str:
        return "-" if o.met is None else ("yes" if o.met else "NO")

    from edgekit.core.table import render

    rows = [(o.name, o.metric, value(o.value), f"{o.seconds:.1f}", o.quality or "-", met(o)) for o in outcomes]
    lines = [render(("example", "metric", "value", "seconds", "quality bar", "met"), rows, right=(2, 3))]
    missed = [o.name for o in outcomes if o.met is False]
    how = "" if plan is None or plan == Plan() else (
        f" on {plan.backend}" + (f", --distribute {plan.distribute} x{plan.n_replicas}" if plan.distribute else ""))
    lines.append(f"total {total:.1f}s for {len(outcomes)} example(s){how}"
                 + (f"; quality bar MISSED by {', '.join(missed)}" if missed else ""))
    return "\n".join(lines)

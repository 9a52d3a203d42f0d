"""The one list of training examples.

Examples register themselves with :func:`register`; the CLI choices, ``train all``,
the tests and the docs read :data:`EXAMPLES`. Example modules import TensorFlow
only inside their functions, so listing the registry is fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from edgekit.core.errors import UsageError

# Modules holding examples, imported by :func:`load`.
EXAMPLE_MODULES = ("edgekit.train.gates", "edgekit.train.linear", "edgekit.train.moons", "edgekit.train.regression",
                   "edgekit.train.grid")

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Example:
    """A registered training example.

    Attributes:
        name: registry key and artifact directory name (e.g. ``moons_h3``).
        task: ``binary``, ``multiclass`` or ``regression``.
        summary: one line for listings.
        fn: ``fn(ctx, **params) -> TrainResult``; imports TensorFlow itself.
        params: keyword arguments for ``fn`` (default none).
        group: a group name (e.g. ``moons``) that selects several examples at once.
        quality: human-readable quality bar checked after full training.
        cost: rough full-training cost (seconds on one core), for spreading work over processes.
        passes: ``passes(metrics) -> bool`` checks ``quality`` on the result's metrics after a
            full (not ``--quick``) run (default none: no bar).
        fit_rows: training rows of the example's one fit, for the up-front check that its batches
            split across replicas (default None: it cannot train distributed).
        batch_size: that fit's batch size (default 32).
        not_distributable: why ``fit_rows`` is None, for the error message (default empty).
    """

    name: str
    task: str
    summary: str
    fn: Callable
    params: dict = field(default_factory=dict)
    group: str | None = None
    quality: str = ""
    cost: float = 2.0
    passes: Callable[[dict], bool] | None = None
    fit_rows: int | None = None
    batch_size: int = 32
    not_distributable: str = ""


EXAMPLES: dict[str, Example] = {}
# group name -> callable(out_dir, results) run after every member trained (e.g. a sweep figure)
GROUP_HOOKS: dict[str, Callable] = {}
# group name -> (prefit(examples, seed, quick, progress), cost): trains the selected members' fits
# together in one process before each member is finished on its own (its fn takes the prefit
# weights); the scheduler keeps such a group in one worker, which also runs its hook.
GROUP_PREFITS: dict[str, tuple[Callable, float]] = {}


def register(name: str, task: str, summary: str, params: dict | None = None,
             group: str | None = None, quality: str = "", cost: float = 2.0,
             passes: Callable[[dict], bool] | None = None, fit_rows: int | None = None,
             batch_size: int = 32, not_distributable: str = "") -> Callable:
    """Decorator registering ``fn`` as example ``name``; duplicate names are refused."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def deco(fn: Callable) -> Callable:
        if name in EXAMPLES:
            raise ValueError(f"duplicate example name {name!r}")
        EXAMPLES[name] = Example(name, task, summary, fn, dict(params or {}), group, quality, cost, passes,
                                 fit_rows, batch_size, not_distributable)
        return fn

    return deco


def group_hook(group: str) -> Callable:
    """Decorator registering a function run after all members of ``group`` trained."""

    def deco(fn: Callable) -> Callable:
        GROUP_HOOKS[group] = fn
        return fn

    return deco


def group_prefit(group: str, cost: float) -> Callable:
    """Decorator registering ``fn(examples, seed, quick, progress)`` as ``group``'s prefit (see GROUP_PREFITS)."""

    def deco(fn: Callable) -> Callable:
        GROUP_PREFITS[group] = (fn, cost)
        return fn

    return deco


def load() -> dict[str, Example]:
    """Import every example module (cheap: no TensorFlow) and return the registry."""
    for mod in EXAMPLE_MODULES:
        importlib.import_module(mod)
    return EXAMPLES


def groups() -> dict[str, list[str]]:
    load()
    out: dict[str, list[str]] = {}
    for ex in EXAMPLES.values():
        if ex.group:
            out.setdefault(ex.group, []).append(ex.name)
    return out


def select(names: list[str]) -> list[Example]:
    """Resolve names, group names and ``all`` into examples, in registry order.

    Raises:
        UsageError: for an unknown name, listing the valid ones.
    """
    load()
    grp = groups()
    chosen: list[str] = []
    for name in names:
        if name == "all":
            chosen.extend(EXAMPLES)
        elif name in EXAMPLES:
            chosen.append(name)
        elif name in grp:
            chosen.extend(grp[name])
        else:
            valid = ", ".join(["all", *grp, *EXAMPLES])
            raise UsageError(f"unknown example {name!r}", expected=f"one of: {valid}")
    seen: set[str] = set()
    return [EXAMPLES[n] for n in chosen if not (n in seen or seen.add(n))]

"""``edgekit train NAME|GROUP|all [--out DIR] [--seed N] [--quick]`` (standard library only at import)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("train", help="train the tutorial's examples into deployable artifacts",
                       description="Train examples (or a group: gates, moons; or all) into "
                                   "<out>/<example>/: SavedModel, .keras, reference.npz, metrics, plots.")
    p.add_argument("names", nargs="+", metavar="NAME", help="example name, group name or 'all'")
    p.add_argument("--out", default="artifacts", help="artifacts directory (default: artifacts)")
    p.add_argument("--seed", type=int, default=0, help="global seed (default: 0)")
    p.add_argument("--quick", action="store_true", help="a few epochs per example, for tests")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default: 2 when training 4+ examples on 2+ cores, else 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from edgekit.train.registry import select

    examples = select(args.names)
    import os

    from edgekit.train.runner import train_examples

    jobs = args.jobs
    if jobs is None:
        jobs = 2 if len(examples) >= 4 and (os.cpu_count() or 1) >= 2 else 1
    if jobs < 1:
        from edgekit.core.errors import UsageError

        raise UsageError("--jobs must be at least 1", got=jobs, expected="1, 2, ...")
    outcomes = train_examples(examples, Path(args.out), seed=args.seed, quick=args.quick, jobs=jobs)
    return 1 if any(o.met is False for o in outcomes) else 0  # artifacts are written either way

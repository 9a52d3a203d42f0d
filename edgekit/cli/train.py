"""``edgekit train NAME|GROUP|all [--backend B] [--distribute MODE] ...`` (standard library only at import)."""

from __future__ import annotations

# Copies of edgekit.train.backends.BACKENDS / DISTRIBUTIONS for the help text (this module imports only
# the standard library); tests/train/test_backends.py checks they agree.
BACKENDS = ("tensorflow", "jax", "torch")
DISTRIBUTIONS = ("mirrored", "multiworker", "data-parallel", "single")


def register(sub) -> None:
    p = sub.add_parser("train", help="train the tutorial's examples into deployable artifacts",
                       description="Train examples (or a group: gates, moons; or all) into "
                                   "<out>/<example>/: SavedModel, .keras, reference.npz, metrics, plots.")
    p.add_argument("names", nargs="+", metavar="NAME", help="example name, group name or 'all'")
    p.add_argument("--out", default="artifacts", help="artifacts directory (default: artifacts)")
    p.add_argument("--seed", type=int, default=0, help="global seed (default: 0)")
    p.add_argument("--quick", action="store_true", help="a few epochs per example, for tests")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default: 2 when training 4+ examples on 2+ cores on one device, else 1)")
    p.add_argument("--backend", default="tensorflow", metavar="|".join(BACKENDS),
                   help="Keras backend to train on (default: tensorflow); the SavedModel is always written "
                        "on TensorFlow from model.keras")
    p.add_argument("--distribute", default=None, metavar="|".join(DISTRIBUTIONS),
                   help="data-parallel training: mirrored (tf.distribute over local devices), multiworker "
                        "(--replicas worker processes on 127.0.0.1), data-parallel (Keras DataParallel on jax), "
                        "single (their Keras fit on one device: the reference) (default: none, the fast path)")
    p.add_argument("--replicas", type=int, default=2,
                   help="devices (mirrored, data-parallel) or worker processes (multiworker) (default: 2)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    from pathlib import Path

    from edgekit.core.errors import UsageError
    from edgekit.train.backends import Plan, check_plan
    from edgekit.train.registry import EXAMPLES, select

    plan = check_plan(Plan(backend=args.backend, distribute=args.distribute, replicas=args.replicas))
    examples = select(args.names)
    from edgekit.train.runner import train_examples

    jobs = args.jobs
    if jobs is None:
        jobs = 2 if len(examples) >= 4 and (os.cpu_count() or 1) >= 2 and plan.distribute is None else 1
    if jobs < 1:
        raise UsageError("--jobs must be at least 1", got=jobs, expected="1, 2, ...")
    outcomes = train_examples(examples, Path(args.out), seed=args.seed, quick=args.quick, jobs=jobs, plan=plan,
                              explicit=[n for n in args.names if n in EXAMPLES])
    return 1 if any(o.met is False for o in outcomes) else 0  # artifacts are written either way

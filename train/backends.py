"""Keras backends and distribution modes: the one list of each, checked before anything imports Keras.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so a backend is a property
of a *process*: ``edgekit train --backend jax`` trains in worker processes started with
the variable set (see :mod:`edgekit.train.runner`). Export always runs on the TensorFlow
backend, through the backend-neutral ``model.keras`` (:mod:`edgekit.train.tf_export`): a
model trained on JAX or torch reloads under TensorFlow with bit-identical weights, and
every converter reads the SavedModel written there.

Nothing here imports Keras, TensorFlow, JAX or torch.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass

from edgekit.core.errors import DependencyError, UsageError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = "tensorflow"

# What to install when a backend's package is missing. jax comes with the `export` extra
# (tensorflowjs depends on it); torch is in no lock: its default PyPI wheel is a CUDA build
# (several GB) and it needs setuptools >= 77.0.3 where the lock pins 65.5.0, so it goes into
# its own environment, from PyTorch's CPU wheel index.
INSTALL = {
    "tensorflow": "pip install 'edgekit[train]'",
    "jax": "pip install 'jax==0.10.2' 'jaxlib==0.10.2' (or pip install 'edgekit[export]')",
    "torch": "pip install torch --index-url https://download.pytorch.org/whl/cpu "
             "(a CPU build, in an environment whose setuptools is >= 77.0.3)",
}
MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

#: ``--distribute`` modes: the backend each needs, and what it is.
DISTRIBUTIONS = {
    "mirrored": ("tensorflow", "tf.distribute.MirroredStrategy over the local devices "
                               "(GPUs, else that many logical CPU devices)"),
    "multiworker": ("tensorflow", "tf.distribute.MultiWorkerMirroredStrategy, one worker process per "
                                  "replica on 127.0.0.1 (TF_CONFIG), started and stopped by edgekit"),
    "data-parallel": ("jax", "keras.distribution.DataParallel over that many JAX host devices"),
    # The reference the distributed runs are compared against: the same Keras fit on the same
    # pre-ordered batches, on one device, on any backend.
    "single": (None, "the distributed runs' Keras fit and data order on one device (their reference)"),
}

# JAX's CPU client: N host devices, and no multi-threaded Eigen in XLA's CPU kernels. With the
# default flags a 2-device all-reduce on 2 cores deadlocked at the first step in 5 of 7 runs of a
# wide model (STACK.md); without Eigen's thread pool the replicas no longer starve each other.
JAX_DP_FLAGS = ("--xla_force_host_platform_device_count={n}", "--xla_cpu_multi_thread_eigen=false")


@dataclass(frozen=True)
class Plan:
    """How one ``edgekit train`` run trains.

    Attributes:
        backend: the Keras backend (default ``tensorflow``).
        distribute: a :data:`DISTRIBUTIONS` key, or None for the single-device fast path (default).
        replicas: devices (mirrored, data-parallel) or worker processes (multiworker) (default 2).
    """

    backend: str = DEFAULT_BACKEND
    distribute: str | None = None
    replicas: int = 2

    @property
    def n_replicas(self) -> int:
        return 1 if self.distribute in (None, "single") else self.replicas

    def describe(self) -> dict:
        return {"backend": self.backend, "distribute": self.distribute, "replicas": self.n_replicas}


def backend_available(name: str) -> bool:
    """True if the backend's package can be imported here (looked up, not imported)."""
    return importlib.util.find_spec(MODULE[name]) is not None


def check_plan(plan: Plan) -> Plan:
    """Refuse an unknown backend or mode, a missing package, or a mode the backend cannot run.

    Raises:
        UsageError: unknown backend/mode, a mode on the wrong backend, replicas < 1 (exit 2).
        DependencyError: the backend's package is not installed; names the install command (exit 2).
    """
    if plan.backend not in BACKENDS:
        raise UsageError("unknown Keras backend", got=plan.backend, expected=f"one of: {', '.join(BACKENDS)}")
    if plan.distribute is not None and plan.distribute not in DISTRIBUTIONS:
        raise UsageError("unknown --distribute mode", got=plan.distribute,
                         expected=f"one of: {', '.join(DISTRIBUTIONS)}")
    if not backend_available(plan.backend):
        raise DependencyError(f"the {plan.backend} backend's package {MODULE[plan.backend]!r} is not installed",
                              expected=INSTALL[plan.backend])
    if plan.distribute is not None:
        needs = DISTRIBUTIONS[plan.distribute][0]
        if needs is not None and plan.backend != needs:
            raise UsageError(f"--distribute {plan.distribute} runs on the {needs} backend", got=plan.backend,
                             expected=f"--backend {needs}" + (" (or --distribute data-parallel on jax)"
                                                              if needs == "tensorflow" else ""))
        if plan.replicas < 1 or (plan.distribute in ("mirrored", "multiworker", "data-parallel")
                                 and plan.replicas < 2):
            raise UsageError("--replicas must be at least 2 for a distributed run", got=plan.replicas,
                             expected="2, 3, ...")
    return plan


def worker_env(plan: Plan) -> dict[str, str]:
    """Environment variables a worker process needs *before* it imports Keras/JAX/TensorFlow."""
    env = {"KERAS_BACKEND": plan.backend, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if plan.backend == "jax":
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith(("--xla_force_host_platform_device_count", "--xla_cpu_multi_thread_eigen"))]
        if plan.distribute == "data-parallel":
            flags += [f.format(n=plan.replicas) for f in JAX_DP_FLAGS]
        env["XLA_FLAGS"] = " ".join(flags)
        env["JAX_PLATFORMS"] = "cpu" if plan.distribute == "data-parallel" else os.environ.get("JAX_PLATFORMS", "")
        # jax 0.10 writes calling convention 10; TF 2.19 reads <= 9. Only matters if a JAX model
        # is ever exported natively (we export through .keras on TensorFlow instead).
        env["JAX_EXPORT_CALLING_CONVENTION_VERSION"] = "9"
    return {k: v for k, v in env.items() if v != ""}


def keras_already_imported_as(backend: str) -> bool | None:
    """None if Keras is not imported in this process, else whether it runs ``backend``."""
    if "keras" not in sys.modules:
        return None
    return sys.modules["keras"].backend.backend() == backend

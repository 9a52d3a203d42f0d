"""Keep TensorFlow's C++ start-up chatter out of the terminal, for every ``edgekit`` command.

``import tensorflow`` writes CUDA/XLA registration lines ("Unable to register cuDNN factory",
"computation placer already registered", "All log messages before absl::InitializeLog() ...")
straight to file descriptor 2 before any log level applies, and the first op prints "failed
call to cuInit" at ERROR level on a machine without a GPU. :func:`install` (called by the CLI
entry before any subcommand runs) sets ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user chose a
level, and puts a meta-path hook in front of the import system that runs TensorFlow's first
import with fd 2 pointed at /dev/null, whoever imports it (Keras, tensorflowjs, a converter).
Python exceptions from that import still propagate and are printed as usual; only what the
C++ libraries (and Python warnings) write during the import itself is dropped. The hook
removes itself after the import. Standard library only.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

#: top-level packages whose first import is silenced.
QUIET_PACKAGES = ("tensorflow",)


class _QuietLoader(importlib.abc.Loader):
    """Delegates to the real loader; ``exec_module`` runs with fd 2 sent to /dev/null."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self._inner, name)

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
            self._inner.exec_module(module)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:  # the module keeps its real loader
                spec.loader = self._inner
            if getattr(module, "__loader__", None) is self:
                module.__loader__ = self._inner


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in QUIET_PACKAGES:
            return None
        uninstall()  # once: later imports of it are cache hits anyway
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


_FINDER = _QuietFinder()


def install() -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` (default 3) and silence TensorFlow's first import in this process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if any(p in sys.modules for p in QUIET_PACKAGES) or _FINDER in sys.meta_path:
        return
    sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Remove the hook (a no-op when it is not installed)."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)

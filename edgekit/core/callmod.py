"""Sub-packages that are also functions: ``edgekit.export(...)`` and ``edgekit.bench(...)``.

``edgekit.export`` has to be both the package of exporters (``edgekit.export.tflite``) and the
API function users call, and Python sets a parent's attribute to the sub-module whenever it is
imported, so a plain function of that name in ``edgekit/__init__.py`` would be replaced at the
first ``import edgekit.export.<anything>``. Instead the package module itself becomes callable:
its class is swapped for :class:`CallableModule`, whose ``__call__`` runs one function of the same
package, imported on first call (so the package stays cheap to import).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call runs ``<__callable_target__>`` (``"module:function"``)."""

    __callable_target__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__callable_function__()(*args, **kwargs)

    def __callable_function__(self) -> Any:
        mod, _, fn = self.__callable_target__.partition(":")
        return getattr(importlib.import_module(mod), fn)


def make_callable(module_name: str, target: str) -> None:
    """Make ``sys.modules[module_name]`` callable; ``target`` is ``"package.module:function"``."""
    module = sys.modules[module_name]
    module.__class__ = CallableModule
    module.__callable_target__ = target  # type: ignore[attr-defined]

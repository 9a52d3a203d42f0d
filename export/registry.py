"""The one list of export formats.

Each format module registers its :class:`edgekit.export.base.Exporter` subclass with the
:func:`register` decorator (duplicate names are refused). The CLI choices, the README
table and the test matrix all read :func:`formats`. Format modules import only the
standard library at module level, so listing formats is fast.
"""

from __future__ import annotations

import importlib

from edgekit.core.errors import UsageError
from edgekit.core.formats import SPECS
from edgekit.export.base import Exporter, Precision

# Modules holding exporters, imported by :func:`formats` in this (default) order.
FORMAT_MODULES = tuple(f"edgekit.export.{name}" for name in SPECS)

_REGISTRY: dict[str, Exporter] = {}


def register(cls: type[Exporter]) -> type[Exporter]:
    """Class decorator adding an exporter to the registry.

    Raises:
        ValueError: if the name is already registered or a precision is not a
            :class:`Precision`.
    """
    name = cls.name
    if name in _REGISTRY:
        raise ValueError(f"duplicate export format {name!r}: already registered by "
                         f"{type(_REGISTRY[name]).__module__}")
    bad = [p for p in cls.precisions if p not in set(Precision)]
    if bad or not cls.precisions:
        raise ValueError(f"format {name!r} declares invalid precisions {bad or '(none)'}; "
                         f"valid: {[p.value for p in Precision]}")
    spec = SPECS.get(name)
    if spec is None:
        raise ValueError(f"export format {name!r} is not listed in edgekit.core.formats.SPECS "
                         f"(valid: {', '.join(SPECS)}): add it there first")
    if tuple(cls.precisions) != spec.precisions or tuple(cls.calibrated) != spec.calibrated:
        raise ValueError(f"format {name!r} declares precisions {cls.precisions} / calibrated {cls.calibrated}, "
                         f"but edgekit.core.formats lists {spec.precisions} / {spec.calibrated}")
    _REGISTRY[name] = cls()
    return cls


def formats() -> dict[str, Exporter]:
    """Import every format module and return ``{name: exporter}`` in default order."""
    for mod in FORMAT_MODULES:
        importlib.import_module(mod)
    return dict(_REGISTRY)


def get(name: str) -> Exporter:
    """Return the exporter called ``name``.

    Raises:
        UsageError: unknown format (the message lists the valid ones).
    """
    regs = formats()
    if name not in regs:
        raise UsageError("unknown export format", got=name, expected=f"one of {', '.join(regs)}")
    return regs[name]


def matrix() -> list[tuple[str, Precision]]:
    """Every registered (format, precision) pair, in default order."""
    return [(name, p) for name, exp in formats().items() for p in exp.precisions]


def all_precisions() -> list[str]:
    """Every precision some registered format supports, in enum order."""
    used = {p for _, p in matrix()}
    return [p.value for p in Precision if p in used]


def markdown_table() -> str:
    """The README's formats table (format, precisions, file layout, converter), from the registry."""
    rows = ["| format | precisions | files (under exports/) | converter |", "|---|---|---|---|"]
    for name, exp in formats().items():
        layout = ", ".join(f"`{exp.relpath(p)}`" for p in exp.precisions)
        rows.append(f"| {name} | {', '.join(p.value for p in exp.precisions)} | {layout} | {exp.converter} |")
    return "\n".join(rows)


def plan(format_names: list[str] | None = None,
         precisions: list[str] | None = None) -> list[tuple[str, Precision]]:
    """Resolve user choices into the (format, precision) variants to run.

    Args:
        format_names: formats to export (default None: every registered format).
        precisions: precisions wanted (default None: every precision each format
            supports). A format gets the listed precisions it supports; a precision no
            chosen format supports is an error.

    Raises:
        UsageError: unknown format or precision, or a precision none of the chosen
            formats supports (the message lists what is valid).
    """
    regs = formats()
    names = list(dict.fromkeys(format_names)) if format_names else list(regs)
    if not names:
        raise UsageError("no export format given", expected=f"one or more of {', '.join(regs)}")
    for n in names:
        if n not in regs:
            raise UsageError("unknown export format", got=n, expected=f"one of {', '.join(regs)}")
    if precisions is None:
        return [(n, p) for n in names for p in regs[n].precisions]
    wanted = list(dict.fromkeys(precisions))
    if not wanted:
        raise UsageError("no precision given", expected=f"one or more of {', '.join(all_precisions())}")
    valid = {p.value for p in Precision}
    for w in wanted:
        if w not in valid:
            raise UsageError("unknown precision", got=w, expected=f"one of {', '.join(all_precisions())}")
    for w in wanted:
        if not any(Precision(w) in regs[n].precisions for n in names):
            supported = "; ".join(f"{n}: {','.join(p.value for p in regs[n].precisions)}" for n in names)
            raise UsageError(f"precision {w} is not supported by the chosen formats",
                             got=",".join(names), expected=supported)
    return [(n, p) for n in names for p in regs[n].precisions if p.value in wanted]

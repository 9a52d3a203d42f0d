"""The one list of formats (edgekit.core.formats) is what every registry and policy covers."""

from __future__ import annotations

from edgekit.core import formats
from edgekit.export import registry as export_registry
from edgekit.parity import tolerance
from edgekit.runtime import registry as runtime_registry


def test_every_format_has_an_exporter_with_its_precisions():
    exporters = export_registry.formats()
    assert list(exporters) == list(formats.FORMATS)
    for name, exp in exporters.items():
        assert tuple(exp.precisions) == formats.SPECS[name].precisions


def test_every_format_has_a_device_runner():
    assert set(formats.FORMATS) <= set(runtime_registry.RUNNERS)
    assert set(runtime_registry.RUNNERS) <= set(formats.FORMATS) | set(formats.REFERENCE_FORMATS)


def test_every_variant_has_a_tolerance_and_nothing_else_does():
    assert set(tolerance.POLICY) == set(formats.variants())


def test_cli_choices_read_the_list():
    import argparse

    from edgekit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for cmd in ("verify", "bench"):
        opt = next(a for a in sub.choices[cmd]._actions if "--formats" in a.option_strings)
        assert tuple(opt.choices) == formats.FORMATS, cmd
    exp = next(a for a in sub.choices["export"]._actions if "--formats" in a.option_strings)
    assert exp.choices is None or tuple(exp.choices) == formats.FORMATS

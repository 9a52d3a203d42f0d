"""The ``edgekit`` command: one entry point, subcommands contributed by each package.

Each package exposes ``<pkg>/cli.py`` with ``register(subparsers)``; those modules
import only the standard library at import time so ``edgekit --help`` stays fast
(no TensorFlow). Errors derived from :class:`edgekit.errors.EdgekitError` become
one line on stderr and their exit code; nothing else is caught, so real bugs
still show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from edgekit import __version__
from edgekit.errors import EdgekitError

# Modules that contribute subcommands, in help order. A module that is not
# there yet (a later issue) is simply skipped.
COMMAND_MODULES = ("train.cli", "export.cli", "runtime.cli", "bench.cli", "edgekit.web_cli")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(modules: tuple[str, ...] = COMMAND_MODULES, prog: str = "edgekit") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Keras models from training to devices, with a parity verdict.")
    parser.add_argument("--version", action="version", version=f"edgekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        mod.register(sub)
    return parser


def run(argv: list[str] | None, modules: tuple[str, ...] = COMMAND_MODULES, prog: str = "edgekit") -> int:
    """Parse ``argv`` and run the chosen subcommand; return the exit code."""
    parser = build_parser(modules, prog)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgekitError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")  # its banner needs IPython when piped
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # jax comes with tensorflowjs; export needs TF
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())

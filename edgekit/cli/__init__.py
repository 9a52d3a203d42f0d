"""The ``edgekit`` command: the top layer, one module per group of subcommands.

Each module here (``train``, ``export``, ``verify``, ``report``, ``bench``, ``web``, ``js``)
has ``register(subparsers)`` and imports only the standard library at import time, so
``edgekit --help`` stays fast (no TensorFlow); the work is imported when a command runs.
Errors derived from :class:`edgekit.core.errors.EdgekitError` become
one line on stderr and their exit code; nothing else is caught, so real bugs
still show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from edgekit.core.errors import EdgekitError
from edgekit.core.version import __version__

# Modules that contribute subcommands, in help order.
COMMAND_MODULES = ("edgekit.cli.train", "edgekit.cli.export", "edgekit.cli.verify", "edgekit.cli.report",
                   "edgekit.cli.bench", "edgekit.cli.web", "edgekit.cli.serve", "edgekit.cli.js", "edgekit.cli.check",
                   "edgekit.cli.explain")
#: what ``python -m edgekit.runtime`` offers on a device: verify, report, setup-js.
DEVICE_COMMANDS = ("edgekit.cli.verify", "edgekit.cli.report", "edgekit.cli.js")


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
        importlib.import_module(name).register(sub)
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
    from edgekit.cli import _quiet

    _quiet.install()  # TF_CPP_MIN_LOG_LEVEL=3 unless set, and TensorFlow's first import without its C++ chatter
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")  # its banner needs IPython when piped
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # jax comes with tensorflowjs; export needs TF
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())

"""One small exception hierarchy; the CLI turns each into one line and an exit code.

Every message says *what* was wrong, what was *got* and what was *expected*
(or valid), so a user can act on a single line.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base of every error edgekit raises on purpose.

    Attributes:
        exit_code: the process exit code the CLI uses for this error (default 2,
            bad usage or bad input).
    """

    exit_code = 2

    def __init__(self, what: str, got: object | None = None, expected: object | None = None):
        self.what = what
        self.got = got
        self.expected = expected
        parts = [what]
        if got is not None:
            parts.append(f"got: {got}")
        if expected is not None:
            parts.append(f"expected: {expected}")
        super().__init__("; ".join(parts))


class UsageError(EdgekitError):
    """Bad command-line usage or an invalid option value (exit 2)."""


class InputError(EdgekitError):
    """A file or array given to edgekit is missing, malformed or of the wrong kind (exit 2)."""


class OutputError(EdgekitError):
    """An output location cannot be written (exit 2)."""


class DependencyError(EdgekitError):
    """An optional dependency is missing; the message says how to install it (exit 2)."""


class IntegrityError(EdgekitError):
    """A file does not match its manifest checksum: corrupted or tampered with (exit 2)."""


class ConversionError(EdgekitError):
    """A converter failed on one variant (exit 1 once the other variants ran)."""

    exit_code = 1


class RuntimeFailure(EdgekitError):
    """A runtime could not load or execute a model (exit 1)."""

    exit_code = 1


class Unverifiable(RuntimeFailure):
    """Nothing available here can run the file faithfully (e.g. an op a reference evaluator lacks).

    verify turns it into an ``unverified`` row naming what is missing: never a pass, never a crash.
    """


def require(module: str, extra: str, pip_name: str | None = None):
    """Import an optional dependency or raise :class:`DependencyError` with the install command.

    Args:
        module: dotted module name to import.
        extra: the edgekit extra that brings it (e.g. ``"export"``).
        pip_name: the PyPI name if it differs from ``module`` (default: ``module``).

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            f"optional dependency {module!r} is not installed ({exc})",
            expected=f"pip install 'edgekit[{extra}]' (or pip install {pip_name or module})",
        ) from exc

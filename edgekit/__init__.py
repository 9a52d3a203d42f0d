"""edgekit: Keras models from training to devices, with a parity verdict.

This package holds only what every part shares and that costs nothing to
import: the version, the error hierarchy, atomic file helpers and the CLI.
``train``, ``export`` and ``runtime`` are sibling top-level packages.
"""

__version__ = "0.1.0"

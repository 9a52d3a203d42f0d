"""``python -m runtime verify|report``: the device-side commands with only the runtime dependencies."""

import os
import sys

from edgekit.cli import run

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(run(sys.argv[1:], modules=("runtime.cli",), prog="python -m runtime"))

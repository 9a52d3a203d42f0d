"""``python -m edgekit.runtime verify|report|setup-js``: the device-side commands.

An entry script, not library code: it starts the CLI (the top layer) with only the device-side
commands, so import-linter's layer contract lists this one upward import as allowed.
"""

import os
import sys

from edgekit.cli import DEVICE_COMMANDS, run

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(run(sys.argv[1:], modules=DEVICE_COMMANDS, prog="python -m edgekit.runtime"))

"""Raw TF.js timing: ``bench/tfjs_raw.cjs`` loads the graph model and times it inside Node.

The inputs are written as raw little-endian bytes plus a JSON spec; Node reports the load
time, the batch-1 latency percentiles and the batch-N throughput (the same loop rules as
:mod:`edgekit.bench.timing`) and its own peak RSS. Node and the npm packages are found as the TF.js
adapter finds them (``$EDGEKIT_NODE``, ``$EDGEKIT_NODE_MODULES`` or ``edgekit setup-js``'s cache).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
from pathlib import Path

from edgekit.bench import timing
from edgekit.bench.inputs import load_inputs
from edgekit.core.errors import DependencyError, RuntimeFailure

SCRIPT = Path(__file__).with_name("tfjs_raw.cjs")
TIMEOUT_S = 600


def _spec(case: dict, budget: timing.Budget, mode: str, work: Path) -> Path:
    x1, xn = load_inputs(case["inputs_file"])
    blob = work / "inputs.bin"
    arrays, offset = [], 0
    with open(blob, "wb") as fh:
        for name in x1:
            entry = {"name": name, "dtype": str(x1[name].dtype)}
            for which, arr in (("x1", x1[name]), ("xn", xn[name])):
                data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
                fh.write(data)
                entry[which] = {"shape": list(arr.shape), "file": str(blob), "offset": offset, "nbytes": len(data)}
                offset += len(data)
            arrays.append(entry)
    spec = work / "spec.json"
    spec.write_text(json.dumps({"backend": case["backend"] or "cpu", "dir": str(Path(case["path"]).resolve()),
                                "inputs": arrays, "budget": dataclasses.asdict(budget), "mode": mode}))
    return spec


def run_node(case: dict, budget: timing.Budget, mode: str = "bench") -> dict:
    """Run the Node timing script for one TF.js case; returns its JSON reply.

    Raises:
        DependencyError: Node or the npm packages are missing, or the script is not installed.
        RuntimeFailure: Node failed (its stderr tail is in the message).
    """
    from edgekit.runtime.tfjs import node_executable, node_modules_dir

    backend = case["backend"] or "cpu"
    if not SCRIPT.is_file():
        raise DependencyError("bench/tfjs_raw.cjs is missing from the installation", got=str(SCRIPT),
                              expected="the package data of edgekit's bench package")
    node, modules = node_executable(), node_modules_dir(backend)
    with tempfile.TemporaryDirectory(prefix="edgekit-tfjs-raw-") as td:
        spec = _spec(case, budget, mode, Path(td))
        try:
            r = subprocess.run([node, str(SCRIPT), str(spec)], capture_output=True, text=True,
                               env={**os.environ, "NODE_PATH": str(modules)}, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeFailure("raw TF.js timing timed out", got=f"{TIMEOUT_S} s", expected="a reply") from exc
    if r.returncode != 0 or not r.stdout.strip():
        tail = " | ".join(r.stderr.strip().splitlines()[-6:]) or "(no stderr)"
        raise RuntimeFailure(f"raw TF.js ({backend}) failed on {case['path']}", got=f"exit {r.returncode}: {tail}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure_in_node(case: dict, budget: timing.Budget) -> dict:
    """Measured row fields of a raw TF.js case."""
    reply = run_node(case, budget, "bench")
    return {"runtime": f"tfjs {reply.get('tfjs', '?')} node {reply.get('backend')} (raw, in Node)",
            "load_s": reply["load_s"], "threads_used": 1, "latency": reply["latency"],
            "throughput": reply["throughput"], "notes": ["timed inside Node; the TF.js backends run "
                                                         "single-threaded here"]}

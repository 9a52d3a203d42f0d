"""``--distribute multiworker``: N worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy.

:func:`train_multiworker` (the launcher, in the ``edgekit train`` process) picks N free
loopback ports, starts ``python -m edgekit.train.multiworker`` N times with ``TF_CONFIG``
naming the cluster and each worker's index, and watches them. Every worker trains the same
examples in the same order (each fit is a collective: all workers take part in every step);
worker 0, the chief, writes the artifacts (each example atomically, exported on the TensorFlow
backend from ``model.keras``); the others train into a scratch directory that is removed.
Each worker reports a sha256 of its trained weights, and the launcher refuses a run whose
workers disagree.

If a worker dies, the launcher stops the others at once (a survivor would wait forever in
its next all-reduce), removes their temporary directories, and raises: no example that
was not finished is left under its final name.

Across machines the same code runs with TF_CONFIG listing every host's address (one worker
per host or per device); only the launcher is local to one machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from edgekit.core.errors import RuntimeFailure
from edgekit.core.fsutil import TMP_PREFIX, clean_stale_tmp
from edgekit.train.backends import Plan, worker_env
from edgekit.train.registry import Example

POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 5.0


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound, read, released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every live worker, then SIGKILL whatever is still running after the grace period."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def train_multiworker(examples: list[Example], out: Path, seed: int, quick: bool, log, plan: Plan) -> list:
    """Train ``examples`` on ``plan.replicas`` local workers; return the chief's outcomes.

    Raises:
        RuntimeFailure: a worker exited with an error or died (the others are stopped), or the
            workers ended with different weights.
    """
    from edgekit.train.runner import Outcome

    n = plan.replicas
    ports = free_ports(n)
    scratch = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}multiworker-p{os.getpid()}-", dir=out))
    names = [ex.name for ex in examples]
    log(f"training {len(names)} example(s) on {n} workers (MultiWorkerMirroredStrategy, "
        f"127.0.0.1:{','.join(map(str, ports))})")
    procs: list[subprocess.Popen] = []
    readers: list[threading.Thread] = []
    try:
        for k in range(n):
            env = {**os.environ, **worker_env(plan), "TF_CONFIG": tf_config(ports, k)}
            job = {"names": names, "out": str(out if k == 0 else scratch / f"worker{k}"), "seed": seed,
                   "quick": quick, "plan": asdict(plan), "result": str(scratch / f"result{k}.json")}
            err = open(scratch / f"stderr{k}.log", "w")
            p = subprocess.Popen([sys.executable, "-m", "edgekit.train.multiworker", json.dumps(job)],
                                 stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            err.close()
            procs.append(p)
            t = threading.Thread(target=_relay, args=(p.stdout, log if k == 0 else None), daemon=True)
            t.start()
            readers.append(t)
        failed = _watch(procs)
        if failed is not None:
            k, code = failed
            _stop(procs)
            clean_stale_tmp(out)
            with open(out / "train.log", "a") as log_file:  # the workers' tracebacks, for the record
                for j in range(n):
                    log_file.write(f"--- multi-worker worker {j} stderr\n")
                    log_file.write((scratch / f"stderr{j}.log").read_text(errors="replace"))
            raise RuntimeFailure(f"multi-worker training: worker {k} exited with code {code}; the other "
                                 "workers were stopped and no unfinished example was written",
                                 got=_last_line(scratch / f"stderr{k}.log"), expected="every worker to finish")
        results = [json.loads((scratch / f"result{k}.json").read_text()) for k in range(n)]
    finally:
        _stop(procs)
        for t in readers:
            t.join(timeout=5)
        shutil.rmtree(scratch, ignore_errors=True)
    outcomes = [Outcome(**{**o, "path": Path(o["path"])}) for o in results[0]]
    for o in outcomes:
        digests = {r[i]["weights_sha256"] for r in results for i in range(len(r)) if r[i]["name"] == o.name}
        if len(digests) != 1:
            raise RuntimeFailure(f"multi-worker training: the workers ended {o.name} with different weights",
                                 got=f"{len(digests)} distinct weight digests", expected="one")
    return outcomes


def _watch(procs: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Wait for every worker; return (index, exit code) of the first that fails, else None."""
    while True:
        codes = [p.poll() for p in procs]
        for k, code in enumerate(codes):
            if code not in (None, 0):
                return k, code
        if all(code == 0 for code in codes):
            return None
        time.sleep(POLL_SECONDS)


def _relay(stream, log) -> None:
    for line in stream:
        if log is not None:
            log(line.rstrip("\n"))


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path.exists() else []
    return lines[-1][-300:] if lines else "(no error output; killed by a signal?)"


def _main(job_json: str) -> int:
    """One worker: train the job's examples under the strategy TF_CONFIG describes; write the result."""
    job = json.loads(job_json)
    plan = Plan(**job["plan"])
    os.environ.update(worker_env(plan))
    from edgekit.core.fsutil import write_json
    from edgekit.train.registry import select
    from edgekit.train.runner import _train_list

    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    outcomes = _train_list(select(job["names"]), out, job["seed"], job["quick"], log, f"w{index} ", plan,
                           chief=index == 0)
    write_json(Path(job["result"]), [{**asdict(o), "path": str(o.path)} for o in outcomes])
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))

"""Data-parallel training ends with the single-device weights (same seed, same global batches).

Reference: ``--distribute single`` (the same Keras fit on the same pre-ordered batches, one
device). Tolerance: 1e-6 absolute on every weight after moons_h3's quick run (100 steps of
global batch 32). Measured here: 1.2e-7 for 2-replica Mirrored, 2-worker MultiWorker and 2-device
JAX DataParallel alike — float32 summation order, since the replicas' half-batch gradients are
summed instead of computed over the whole batch at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from edgekit.train.backends import Plan
from edgekit.train.distribute import check_split, epoch_order

WEIGHT_ATOL = 1e-6
EXAMPLE = "moons_h3"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from edgekit.train.registry import select
    from edgekit.train.runner import train_examples

    cache: dict = {}

    def get(backend: str, mode: str):
        key = (backend, mode)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"dist-{backend}-{mode}")
            outcomes = train_examples(select([EXAMPLE]), out, quick=True, log=lambda *a: None,
                                      plan=Plan(backend=backend, distribute=mode, replicas=2))
            cache[key] = (out / EXAMPLE, outcomes[0])
        return cache[key]

    return get


def _weights(d):
    import keras

    return keras.models.load_model(d / "model.keras", compile=False, safe_mode=True).get_weights()


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.mark.parametrize("mode", ["mirrored", "multiworker"])
def test_tf_distribute_matches_single_device(runs, mode):
    single, _ = runs("tensorflow", "single")
    dist, outcome = runs("tensorflow", mode)
    diff = _max_diff(_weights(single), _weights(dist))
    assert diff <= WEIGHT_ATOL, f"{mode}: weights {diff:.3g} from single-device"
    m = json.loads((dist / "metrics.json").read_text())
    assert m["training"]["distribute"] == mode and m["training"]["replicas"] == 2
    assert (dist / "saved_model" / "1" / "saved_model.pb").exists()
    assert outcome.weights_sha256  # multiworker: every worker reported this same digest (else the run fails)


# slow: two more JAX processes (~40 s each here, loaded). With the flags worker_env sets
# (--xla_cpu_multi_thread_eigen=false) none of 9 data-parallel runs here deadlocked (6 of regression_deep,
# the widest model; 3 of moons_h3/regression_mlp); STACK.md saw 1 in 10 on a wide model, so the run goes
# through the CLI with a timeout: a deadlock fails the test instead of hanging the suite.
@pytest.mark.slow
def test_jax_data_parallel_matches_single_device(runs, tmp_path):
    single, _ = runs("jax", "single")
    r = subprocess.run([sys.executable, "-m", "edgekit", "train", EXAMPLE, "--quick", "--backend", "jax",
                        "--distribute", "data-parallel", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    dist = tmp_path / EXAMPLE
    diff = _max_diff(_weights(single), _weights(dist))
    assert diff <= WEIGHT_ATOL, f"data-parallel: weights {diff:.3g} from single-device"


def test_split_rules():
    from edgekit.core.errors import UsageError

    check_split("ok", 160, 32, 2)
    check_split("gate", 4, 32, 2)  # one full-data batch of 4 rows
    with pytest.raises(UsageError, match="does not split across 2 replicas"):
        check_split("linear_regression", 5, 32, 2)
    with pytest.raises(UsageError, match="not whole batches"):
        check_split("odd", 100, 32, 2)


def test_epoch_order_is_seeded_permutations():
    order = epoch_order(7, 3, seed=5).reshape(3, 7)
    assert all(sorted(row) == list(range(7)) for row in order)
    assert not np.array_equal(order[0], order[1])
    np.testing.assert_array_equal(order, epoch_order(7, 3, seed=5).reshape(3, 7))


def test_train_all_distributed_skips_what_cannot_split(tmp_path):
    """From ``all``, unsplittable examples are skipped with a note; named explicitly they are refused."""
    from edgekit.core.errors import UsageError
    from edgekit.train.registry import select
    from edgekit.train.runner import _distributable

    notes: list[str] = []
    kept = _distributable(select(["all"]), Plan(distribute="mirrored"), (), notes.append)
    names = {ex.name for ex in kept}
    assert "linear_regression" not in names and "regression_grid" not in names and "moons_h3" in names
    assert "linear_regression" in notes[0] and "regression_grid" in notes[0]
    with pytest.raises(UsageError, match="regression_grid cannot train distributed"):
        _distributable(select(["regression_grid"]), Plan(distribute="mirrored"), ("regression_grid",), print)


_UNPATCHED = r"""
import json, os, sys
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": sys.argv[2].split(",")},
                                      "task": {"type": "worker", "index": int(sys.argv[1])}})
import keras, numpy as np, tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    m.compile("sgd", "mse")
x = np.ones((16, 2), "float32")
try:
    m.fit(tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(8), epochs=1, verbose=0)
except Exception as exc:
    print("FAILED", type(exc).__name__, flush=True)
    os._exit(0)
print("TRAINED", flush=True)
os._exit(0)
"""


@pytest.mark.slow  # two TensorFlow processes (~20 s)
def test_keras_20585_still_needs_the_patch(tmp_path):
    """Plain keras 3.15.1 fit() fails under MultiWorkerMirroredStrategy; when this fails, drop the patch."""
    from edgekit.train.multiworker import free_ports

    ports = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    script = tmp_path / "unpatched.py"
    script.write_text(_UNPATCHED)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    procs = [subprocess.Popen([sys.executable, str(script), str(k), ports], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env) for k in range(2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all("FAILED" in o for o in outs), outs


@pytest.mark.slow  # two TensorFlow workers training a full-length example until one is killed
def test_dying_worker_stops_the_others(tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "art"
    launcher = subprocess.Popen([sys.executable, "-m", "edgekit", "train", "moons_h50", "--distribute",
                                 "multiworker", "--out", str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline and launcher.poll() is None:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            cmd = " ".join(child.cmdline())
            if "edgekit.train.multiworker" in cmd and "/worker1" in cmd:
                victim = child
        time.sleep(0.5)
    assert victim is not None, "worker 1 never started"
    # let it get into training (its scratch example dir exists), then kill it
    while time.monotonic() < deadline and not list(out.glob(".tmp-multiworker-*/worker1/.tmp-moons_h50-*")):
        time.sleep(0.5)
    workers = [c for c in psutil.Process(launcher.pid).children() if "edgekit.train.multiworker" in
               " ".join(c.cmdline())]
    victim.kill()
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "worker 1 exited" in lines[0] and "stopped" in lines[0], err
    assert not (out / "moons_h50").exists()
    assert not list(out.glob(".tmp-*")), list(out.iterdir())
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)

"""``edgekit train --backend``: a quick example on each available backend exports to every format and verifies.

The backend is chosen per worker process (this pytest process already runs Keras on TensorFlow),
and the SavedModel is written on TensorFlow from the backend-neutral model.keras.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgekit.train.backends import BACKENDS, INSTALL, Plan, backend_available, check_plan, worker_env

EDGEKIT = [sys.executable, "-m", "edgekit"]


def _backend_param(name: str):
    marks = []
    if name == "tensorflow":
        # the default backend's quick examples are exported and verified by tests/export and tests/parity
        marks.append(pytest.mark.slow)
    if not backend_available(name):
        marks.append(pytest.mark.skip(reason=f"{name} is not installed here (install: {INSTALL[name]})"))
    return pytest.param(name, marks=marks)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edgekit.train.registry import select
    from edgekit.train.runner import train_examples

    cache: dict = {}

    def get(backend: str):
        if backend not in cache:
            out = tmp_path_factory.mktemp(f"backend-{backend}")
            train_examples(select(["moons_h3"]), out, quick=True, log=lambda *a: None, plan=Plan(backend=backend))
            cache[backend] = out / "moons_h3"
        return cache[backend]

    return get


@pytest.mark.parametrize("backend", [_backend_param(b) for b in BACKENDS])
def test_quick_example_exports_and_verifies(trained, backend):
    from edgekit.export.api import export_model
    from edgekit.parity.verify import verify

    d = trained(backend)
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["backend"] == backend and metrics["training"]["keras_backend"] == backend
    if backend != "tensorflow":
        assert metrics["training"]["saved_model_written_by"] == "model.keras reloaded on the tensorflow backend"
        # the reloaded model predicts what the trained one did (measured 1.8e-7 for JAX)
        assert metrics["training"]["tensorflow_reload_max_abs_diff"] <= 1e-5
    assert (d / "saved_model" / "1" / "saved_model.pb").exists()
    exported = export_model(d)
    assert all(r.status == "ok" for r in exported.results), [(r.format, r.precision, r.error)
                                                              for r in exported.results if r.status != "ok"]
    assert {r.format for r in exported.results} == {"tflite", "coreml", "tfjs", "onnx"}
    report = verify([d])
    assert report and len(report.rows) >= len(exported.results), report.summary()


def test_plan_refusals_name_the_fix():
    from edgekit.core.errors import DependencyError, UsageError

    with pytest.raises(UsageError, match="unknown Keras backend.*tensorflow, jax, torch"):
        check_plan(Plan(backend="theano"))
    with pytest.raises(UsageError, match="runs on the tensorflow backend"):
        check_plan(Plan(backend="jax", distribute="mirrored"))
    with pytest.raises(UsageError, match="runs on the jax backend"):
        check_plan(Plan(backend="tensorflow", distribute="data-parallel"))
    with pytest.raises(UsageError, match="--replicas"):
        check_plan(Plan(distribute="mirrored", replicas=1))
    if not backend_available("torch"):
        with pytest.raises(DependencyError, match="pip install torch"):
            check_plan(Plan(backend="torch"))


def test_worker_env_sets_backend_and_jax_flags():
    env = worker_env(Plan(backend="jax", distribute="data-parallel", replicas=3))
    assert env["KERAS_BACKEND"] == "jax"
    assert "--xla_force_host_platform_device_count=3" in env["XLA_FLAGS"].split()
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"].split()
    assert "xla_force_host" not in worker_env(Plan(backend="jax")).get("XLA_FLAGS", "")
    assert worker_env(Plan())["KERAS_BACKEND"] == "tensorflow"


def _cli(*args, **kw):
    return subprocess.run([*EDGEKIT, "train", *args], capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.parametrize("args, needle", [
    (["--backend", "theano"], "unknown Keras backend"),
    (["--distribute", "sideways"], "unknown --distribute mode"),
    (["--backend", "jax", "--distribute", "mirrored"], "runs on the tensorflow backend"),
    (["--distribute", "mirrored", "--replicas", "3"], "does not split across 3 replicas"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    r = _cli("moons_h3", "--quick", "--out", str(tmp_path / "a"), *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "a" / "moons_h3").exists()


@pytest.mark.skipif(backend_available("torch"), reason="torch is installed here: nothing is missing")
def test_cli_missing_backend_names_the_install_command(tmp_path):
    r = _cli("moons_h3", "--quick", "--backend", "torch", "--out", str(tmp_path / "a"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'torch' is not installed" in lines[0] and "pip install torch" in lines[0]
    assert not (tmp_path / "a").exists()


@pytest.mark.slow  # two JAX workers training until one is killed (~60 s)
@pytest.mark.skipif(not backend_available("jax"), reason="jax is not installed here")
def test_dying_backend_worker_stops_the_others(tmp_path):
    import time

    psutil = pytest.importorskip("psutil")
    out = tmp_path / "art"
    cli = subprocess.Popen([*EDGEKIT, "train", "all", "--quick", "--backend", "jax", "--jobs", "2", "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    workers: list = []
    while time.monotonic() < deadline and cli.poll() is None:
        workers = [c for c in psutil.Process(cli.pid).children() if "spawn_main" in " ".join(c.cmdline())
                   and "resource_tracker" not in " ".join(c.cmdline())]
        # both working, one example finished (kept), others under way (must vanish)
        if len(workers) == 2 and list(out.glob("*/metrics.json")) and list(out.glob(".tmp-*-p*")):
            break
        time.sleep(0.5)
    assert len(workers) == 2 and cli.poll() is None, "the workers never got going"
    workers[0].kill()
    _, err = cli.communicate(timeout=120)
    assert cli.returncode == 1
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("edgekit:")]
    assert len(lines) == 1 and "worker process died" in lines[0] and "stopped" in lines[0], err
    assert not workers[1].is_running() or workers[1].status() == psutil.STATUS_ZOMBIE
    assert not list(out.glob(".tmp-*")), sorted(p.name for p in out.iterdir())
    for d in out.iterdir():  # whatever finished before the kill is complete
        if d.is_dir():
            assert (d / "metrics.json").exists() and (d / "saved_model" / "1" / "saved_model.pb").exists()


def test_cli_lists_match_the_one_list():
    """edgekit/cli/train.py spells the choices out (stdlib-only import); they must be backends.py's."""
    from edgekit.cli import train as cli_train
    from edgekit.train.backends import DISTRIBUTIONS

    assert cli_train.BACKENDS == BACKENDS
    assert set(cli_train.DISTRIBUTIONS) == set(DISTRIBUTIONS)

"""TF.js adapter: the persistent Node runner, its wire format and its failure modes."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from edgekit.core.errors import DependencyError, InputError, RuntimeFailure, UsageError
from edgekit.runtime import tfjs
from edgekit.runtime.registry import open_model

pytestmark = [pytest.mark.node, pytest.mark.filterwarnings("ignore"),
              pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")]


def identity_model(d, dtype="DT_FLOAT", width=3):
    """A real TF.js graph model (hand-written model.json, no weights): output_0 = Identity(x)."""
    d.mkdir(parents=True, exist_ok=True)
    shape = {"dim": [{"size": "-1"}, {"size": str(width)}]}
    topology = {"node": [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": dtype}, "shape": {"shape": shape}}},
        {"name": "Identity", "op": "Identity", "input": ["x"], "attr": {"T": {"type": dtype}}},
    ], "library": {}, "versions": {"producer": 1982}}
    signature = {"inputs": {"x": {"name": "x:0", "dtype": dtype, "tensorShape": shape}},
                 "outputs": {"output_0": {"name": "Identity:0", "dtype": dtype, "tensorShape": shape}}}
    (d / "model.json").write_text(json.dumps({
        "format": "graph-model", "generatedBy": "edgekit test", "convertedBy": "hand",
        "signature": signature, "modelTopology": topology, "weightsManifest": []}))
    return d


@pytest.mark.parametrize("backend", tfjs.BACKENDS)
def test_wire_preserves_nan_inf_and_bits(tmp_path, backend):
    with open_model(identity_model(tmp_path / "id"), backend=backend) as r:
        assert [i.to_dict() for i in r.inputs] == [{"name": "x", "shape": [None, 3], "dtype": "float32"}]
        x = np.array([[np.nan, np.inf, -np.inf], [-0.0, 1e-45, np.finfo(np.float32).max],
                      [1 / 3, -2.5, 7.0]], np.float32)
        y = r.predict(x)["output_0"]
        assert y.dtype == np.float32 and y.shape == (3, 3)
        np.testing.assert_array_equal(y.view(np.uint32)[1:], x.view(np.uint32)[1:])
        assert np.isnan(y[0, 0]) and y[0, 1] == np.inf and y[0, 2] == -np.inf


def test_wire_int32(tmp_path):
    with open_model(identity_model(tmp_path / "id32", dtype="DT_INT32", width=2)) as r:
        assert r.inputs[0].dtype == "int32"
        x = np.array([[2**31 - 1, -(2**31)], [0, -7]], np.int32)
        np.testing.assert_array_equal(r.predict(x)["output_0"], x)
        with pytest.raises(InputError, match="wrong dtype.*float32.*int32"):
            r.predict(x.astype(np.float32))


def test_one_node_process_per_backend_shared_by_runners(runtime_models, golden):
    a = open_model(runtime_models["tfjs"], backend="cpu")
    b = open_model(runtime_models["tfjs"], backend="cpu")
    w = open_model(runtime_models["tfjs"], backend="wasm")
    try:
        assert a._server is b._server and a._server is not w._server
        pid = a._server.proc.pid
        x = golden(50)
        for _ in range(20):
            a.predict(x)
            b.predict(x[:1])
        assert a._server.proc.pid == pid and a._server.alive
        assert tfjs.get_server("cpu").proc.pid == pid
        np.testing.assert_array_equal(a.predict(x)["output_0"], b.predict(x)["output_0"])
    finally:
        for r in (a, b, w):
            r.close()


def test_no_process_is_started_per_call(runtime_models, golden):
    """50 calls go to the one persistent Node process: same pid, no new child processes.
    (Its speed, ~1 ms per call, is measured by `edgekit bench`, not asserted here.)"""
    import psutil

    with open_model(runtime_models["tfjs"], backend="cpu") as r:
        x = golden(1)
        first = r.predict(x)["output_0"]
        pid = r._server.proc.pid
        children = {c.pid for c in psutil.Process().children(recursive=True)}
        for _ in range(50):
            np.testing.assert_array_equal(r.predict(x)["output_0"], first)
        assert r._server.proc.pid == pid and r._server.proc.poll() is None
        assert {c.pid for c in psutil.Process().children(recursive=True)} <= children


def test_runner_recovers_after_the_node_process_died(runtime_models, golden):
    with open_model(runtime_models["tfjs"], backend="cpu") as r:
        before = r.predict(golden(4))["output_0"]
        r._server.proc.kill()  # the process this test session started
        r._server.proc.wait()
        np.testing.assert_array_equal(r.predict(golden(4))["output_0"], before)


def test_js_error_surfaces(tmp_path):
    d = identity_model(tmp_path / "broken")
    (d / "model.json").write_text('{"format": "graph-model", "modelTopology": ')
    with pytest.raises(RuntimeFailure) as exc:
        open_model(d)
    msg = str(exc.value)
    assert "TF.js (cpu) failed on load" in msg and "JSON" in msg and "\n" not in msg


def test_missing_shard_surfaces(runtime_models, tmp_path):
    d = tmp_path / "noshard"
    shutil.copytree(runtime_models["tfjs"], d)
    for shard in d.glob("*.bin"):
        shard.unlink()
    with pytest.raises(RuntimeFailure, match="ENOENT.*group1-shard1of1.bin"):
        open_model(d)


def test_missing_model_json(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model.json"):
        open_model(tmp_path / "empty", format="tfjs")


def test_unknown_backend(runtime_models):
    with pytest.raises(UsageError, match="unknown TF.js backend.*webgl"):
        tfjs.TfjsRunner(runtime_models["tfjs"], backend="webgl")


def test_missing_npm_packages_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_NODE_MODULES", str(tmp_path))
    with pytest.raises(DependencyError) as exc:
        tfjs.NodeServer("wasm")
    assert "@tensorflow/tfjs" in str(exc.value) and "npm ci" in str(exc.value)
    assert exc.value.exit_code == 2


def test_missing_node_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_NODE", str(tmp_path / "no-node-here"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DependencyError, match="Node.js is needed.*Node.js >= 20"):
        tfjs.NodeServer("cpu")


def test_node_crash_reports_its_stderr(tmp_path, monkeypatch):
    fake = tmp_path / "node"
    fake.write_text("#!/bin/sh\necho 'boom: the runner could not start' >&2\nexit 7\n")
    fake.chmod(0o755)
    monkeypatch.setenv("EDGEKIT_NODE", str(fake))
    with pytest.raises(RuntimeFailure) as exc:
        tfjs.NodeServer("cpu")
    assert "boom: the runner could not start" in str(exc.value) and "exit code 7" in str(exc.value)


def test_close_servers_stops_the_processes():
    server = tfjs.NodeServer("cpu")
    assert server.alive
    server.close()
    assert server.proc.returncode == 0 and not server.alive


def test_node_modules_env_override(monkeypatch):
    real = tfjs.node_modules_dir("wasm")
    monkeypatch.setenv("EDGEKIT_NODE_MODULES", str(real))
    assert tfjs.node_modules_dir("wasm") == real
    assert os.path.isfile(tfjs.RUNNER_JS)

"""What ``edgekit serve`` refuses before anything listens: tampered files, missing variants, bad options.

Also: naming and interface planning from the manifests, the binary-extension codec, and that the
serving layer imports no TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _serve import ServeProcess, free_port

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlserver") is None,
                                reason="edgekit serve needs the serve extra: pip install 'edgekit[serve]'")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", "serve", *args], capture_output=True, text=True,
                          timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-1500:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekit: error:"), proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _inproc(name: str, *args: str) -> None:
    """Run ``_inproc.NAME(*args)`` in a fresh interpreter: it imports mlserver, whose gRPC protos clash with
    tritonclient's (both register ``inference.*``) in the one protobuf pool of this test process."""
    code = f"import sys, _inproc; _inproc.{name}(*sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _nothing_listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def copy(serve_artifacts, tmp_path):
    def make(name: str = "moons_h3"):
        dst = tmp_path / "art" / name
        shutil.copytree(serve_artifacts / name, dst)
        return dst
    return make


def test_tampered_file_is_refused_at_start(copy):
    ex = copy()
    f = ex / "exports" / "tflite" / "model_fp32.tflite"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    port = free_port()
    proc = _cli(str(ex), "--port", str(port), "--grpc-port", str(free_port()))
    _one_line_error(proc, "checksum mismatch", "model_fp32.tflite", "tampered")
    assert proc.stdout == "" and _nothing_listens(port)


def test_tampered_file_of_a_further_precision_is_refused(copy):
    ex = copy()
    (ex / "exports" / "onnx" / "model_int8_dynamic.onnx").write_bytes(b"not the exported model")
    _one_line_error(_cli(str(ex), "--format", "onnx", "--precisions", "fp32,int8_dynamic"), "checksum mismatch")


def test_file_swapped_after_the_start_check_is_refused_by_the_runtime(copy):
    """The runtime checks the digest again when it loads (here: the file changes between plan and load)."""
    _inproc("file_swapped_after_plan", str(copy()))


@pytest.mark.parametrize("args,words", [
    (["--format", "coreml"], ["invalid choice"]),
    (["--precisions", "fp64"], ["invalid --precisions", "fp32,fp16,int8_dynamic,int8"]),
    (["--precisions", "fp32,fp32"], ["invalid --precisions"]),
    (["--format", "onnx", "--precisions", "fp16"], ["invalid --precisions"]),
    (["--port", "0"], ["--port out of range"]),
    (["--port", "9100", "--grpc-port", "9100"], ["ports must differ"]),
    (["--max-batch-rows", "0"], ["--max-batch-rows too small"]),
    (["--batch-time-ms", "-1"], ["--batch-time-ms out of range"]),
])
def test_bad_options_are_one_line_errors(serve_artifacts, args, words):
    proc = _cli(str(serve_artifacts), *args)
    if "invalid choice" in words:  # argparse's own one line
        assert proc.returncode == 2 and "invalid choice" in proc.stderr and "Traceback" not in proc.stderr
        return
    _one_line_error(proc, *words)


def test_missing_dir_variant_and_busy_port(serve_artifacts, tmp_path, copy):
    _one_line_error(_cli(str(tmp_path / "nope")), "directory not found")
    (tmp_path / "empty").mkdir()
    _one_line_error(_cli(str(tmp_path / "empty")), "no export manifest found")
    ex = copy()
    man = ex / "exports" / "manifest.json"
    data = json.loads(man.read_text())
    data["artifacts"] = [a for a in data["artifacts"] if a["precision"] != "int8"]
    man.write_text(json.dumps(data))
    _one_line_error(_cli(str(ex), "--precisions", "fp32,int8"), "has no tflite/int8 file",
                    "edgekit export --formats tflite --precisions int8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        _one_line_error(_cli(str(serve_artifacts), "--port", str(busy)), f"cannot listen on 127.0.0.1:{busy}")


def test_plan_names_versions_and_interfaces(serve_artifacts, copy):
    from edgekit.core.errors import UsageError
    from edgekit.serve.plan import plan

    models = plan([serve_artifacts], "tflite", ["fp32", "int8", "fp16"])
    names = [m.name for m in models]
    assert names == ["moons_h3", "moons_h3-int8", "moons_h3-fp16", "regression_mlp", "regression_mlp-int8",
                     "regression_mlp-fp16"]
    assert {m.version for m in models} == {"1"}
    int8 = models[1]
    assert int8.precision == "int8" and int8.path.name == "model_int8.tflite"
    # the manifest lists the int8 file's own int8 tensors; it is served with the float interface
    assert [(t.name, t.dtype, t.shape) for t in int8.inputs] == [("features", "float32", (None, 2))]
    assert models[0].task == "multiclass" and models[0].labels == ("0", "1")
    with pytest.raises(UsageError, match="same name"):
        plan([serve_artifacts / "moons_h3", copy("moons_h3")])


def test_binary_codec_round_trip():
    _inproc("binary_codec_round_trip")


def test_serving_layer_imports_no_tensorflow():
    code = ("import sys, edgekit.serve.server, edgekit.serve.runtime, edgekit.cli.serve;"
            "print([m for m in ('tensorflow', 'keras', 'jax', 'torch', 'tf2onnx') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_sigterm_stops_the_server_cleanly(serve_artifacts):
    with ServeProcess(str(serve_artifacts / "regression_mlp"), "--format", "onnx") as srv:
        assert srv.alive()
        port = srv.port
    assert srv.proc.returncode == 0 and "edgekit serve: stopped" in srv.output
    assert _nothing_listens(port)


def test_parallel_workers_serve_the_same_answers(serve_artifacts):
    """``--workers 1``: inference in an MLServer worker process (uvloop < 0.22: MLServer 1.7.1's workers
    die at start with uvloop 0.22+), the guard still in front of the batcher in the main process."""
    from _serve import http, post_json

    body = {"inputs": [{"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}
    with ServeProcess(str(serve_artifacts / "moons_h3"), "--format", "onnx") as inproc:
        want = post_json(f"{inproc.url}/v2/models/moons_h3/infer", body)
    with ServeProcess(str(serve_artifacts / "moons_h3"), "--format", "onnx", "--workers", "1") as srv:
        got = post_json(f"{srv.url}/v2/models/moons_h3/infer", body)
        assert got[0] == want[0] == 200 and got[1]["outputs"] == want[1]["outputs"]
        status, _, raw = http("POST", f"{srv.url}/v1/models/moons_h3:predict", b'{"instances": [[1, 2, 3]]}')
        assert status == 400 and "wrong shape" in json.loads(raw)["error"]
        status, tfs = post_json(f"{srv.url}/v1/models/moons_h3:predict", {"instances": [[0.1, 0.2], [0.3, 0.4]]})
        assert status == 200 and sum(tfs["predictions"], []) == want[1]["outputs"][0]["data"]

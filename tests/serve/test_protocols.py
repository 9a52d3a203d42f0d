"""Independent clients against a real ``edgekit serve``: outputs equal the runtime's own, within Keras' policy.

Clients: tritonclient over HTTP in binary mode (its default) and JSON mode, tritonclient over
gRPC, and TensorFlow Serving's REST API through the standard library (row and columnar forms,
status, metadata). Every answer is compared exactly with the edgekit runtime adapter run
directly on the same file, and judged against the Keras reference with the tolerance policy
(``edgekit.parity``: the same ``judge`` as ``edgekit verify``).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from _serve import EXAMPLES, http, post_json

from edgekit.parity.targets import calibrated_rows, load_target
from edgekit.parity.tolerance import tolerances_for
from edgekit.parity.verify import judge
from edgekit.runtime import manifest as mf
from edgekit.runtime.registry import open_model

# mlserver is not imported here: its gRPC protos and tritonclient's share names ("inference.*") and
# cannot both live in one process's protobuf pool. The server runs in its own process anyway.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlserver") is None,
                                reason="edgekit serve needs the serve extra: pip install 'edgekit[serve]'")
thttp = pytest.importorskip("tritonclient.http", reason="tritonclient[http] comes with the serve extra")
tgrpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] comes with the serve extra")

VARIANTS = [("tflite", "fp32", ""), ("tflite", "int8", "-int8"), ("onnx", "fp32", "")]


def _case(root, example, fmt, precision):
    manifest = root / example / "exports" / "manifest.json"
    target = load_target(manifest)
    art = next(a for a in mf.load(manifest).artifacts if a.format == fmt and a.precision == precision)
    return target, art, art.resolve(manifest.parent)


def _direct(path, fmt, x):
    with open_model(path, fmt) as runner:
        return runner.predict({"features": x})["output_0"]


def _verdict(target, art, got):
    tols = tolerances_for(art.format, art.precision, list(target.reference.outputs))
    mask = calibrated_rows(art, target) if tols[""].calibrated_range_only else None
    return judge(target, art.format, art.precision, "served", {"output_0": got}, tols, {}, rows_mask=mask)


def _server(request, fmt):
    return request.getfixturevalue("onnx_server" if fmt == "onnx" else "tflite_server")


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("fmt,precision,suffix", VARIANTS, ids=[f"{f}-{p}" for f, p, _ in VARIANTS])
def test_every_client_gets_the_runtimes_outputs(request, serve_artifacts, example, fmt, precision, suffix):
    srv = _server(request, fmt)
    name = example + suffix
    target, art, path = _case(serve_artifacts, example, fmt, precision)
    x = target.reference.inputs["features"]
    direct = _direct(path, fmt, x)
    answers = {}

    client = thttp.InferenceServerClient(srv.url.removeprefix("http://"))
    for binary in (True, False):
        inp = thttp.InferInput("features", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = thttp.InferRequestedOutput("output_0", binary_data=binary)
        how = f"http {'binary' if binary else 'json'}"
        answers[how] = client.infer(name, [inp], outputs=[out]).as_numpy("output_0")
    inp = thttp.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    answers["http, outputs not named (binary_data_output)"] = client.infer(name, [inp]).as_numpy("output_0")
    client.close()

    gclient = tgrpc.InferenceServerClient(srv.grpc)
    ginp = tgrpc.InferInput("features", list(x.shape), "FP32")
    ginp.set_data_from_numpy(x)
    answers["grpc"] = gclient.infer(name, [ginp]).as_numpy("output_0")
    gclient.close()

    status, rows = post_json(f"{srv.url}/v1/models/{name}:predict", {"instances": x.tolist()})
    assert status == 200, rows
    answers["tf serving rows"] = np.asarray(rows["predictions"], dtype=np.float32)
    status, cols = post_json(f"{srv.url}/v1/models/{name}/versions/1:predict",
                             {"signature_name": "serving_default", "inputs": {"features": x.tolist()}})
    assert status == 200, cols
    answers["tf serving columns"] = np.asarray(cols["outputs"], dtype=np.float32)

    for how, got in answers.items():
        assert got.dtype == np.float32 and got.shape == direct.shape, how
        np.testing.assert_array_equal(got, direct, err_msg=how)
        row = _verdict(target, art, got)
        assert row["status"] == "pass", (how, row["message"])


def test_metadata_comes_from_the_manifest(tflite_server, serve_artifacts):
    client = thttp.InferenceServerClient(tflite_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    for example in EXAMPLES:
        man = mf.load(serve_artifacts / example / "exports" / "manifest.json")
        art = next(a for a in man.artifacts if a.format == "tflite" and a.precision == "fp32")
        meta = client.get_model_metadata(example)
        assert client.is_model_ready(example) and client.is_model_ready(example, "1")
        assert meta["versions"] == ["1"] and meta["platform"] == "edgekit-tflite"
        for side in ("inputs", "outputs"):
            want = [{"name": t["name"], "datatype": "FP32", "shape": [-1 if d is None else d for d in t["shape"]]}
                    for t in getattr(art, side)]
            assert meta[side] == want
    # the int8 file is served with the float interface its adapter presents (it quantizes itself)
    assert client.get_model_metadata("moons_h3-int8")["inputs"][0]["datatype"] == "FP32"
    client.close()
    gclient = tgrpc.InferenceServerClient(tflite_server.grpc)
    assert gclient.is_server_ready() and gclient.is_model_ready("regression_mlp")
    assert [int(d) for d in gclient.get_model_metadata("regression_mlp").inputs[0].shape] == [-1, 10]
    gclient.close()


def test_tf_serving_status_and_metadata(tflite_server):
    status, _, body = http("GET", f"{tflite_server.url}/v1/models/moons_h3")
    assert status == 200
    assert json.loads(body) == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert http("GET", f"{tflite_server.url}/v1/models/moons_h3/versions/1")[0] == 200
    status, _, body = http("GET", f"{tflite_server.url}/v1/models/regression_mlp/metadata")
    meta = json.loads(body)
    assert status == 200 and meta["model_spec"] == {"name": "regression_mlp", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["features"]["dtype"] == "DT_FLOAT"
    assert sig["inputs"]["features"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}, {"size": "10", "name": ""}]
    assert sig["outputs"]["output_0"]["tensor_shape"]["dim"][1]["size"] == "1"


def test_tf_serving_row_objects_and_single_instance(tflite_server, serve_artifacts):
    x = load_target(serve_artifacts / "moons_h3" / "exports" / "manifest.json").reference.inputs["features"][:3]
    status, by_name = post_json(f"{tflite_server.url}/v1/models/moons_h3:predict",
                                {"instances": [{"features": r} for r in x.tolist()]})
    status2, plain = post_json(f"{tflite_server.url}/v1/models/moons_h3:predict", {"instances": x.tolist()})
    assert status == status2 == 200 and by_name == plain
    status, cols = post_json(f"{tflite_server.url}/v1/models/moons_h3:predict", {"inputs": x.tolist()})
    assert status == 200 and cols["outputs"] == plain["predictions"]
    status, ints = post_json(f"{tflite_server.url}/v1/models/moons_h3:predict", {"instances": [[1, 0]]})
    assert status == 200 and len(ints["predictions"]) == 1  # JSON integers are numbers for a float input


def test_onnx_server_names_and_health(onnx_server):
    assert http("GET", f"{onnx_server.url}/v2/health/live")[0] == 200
    assert http("GET", f"{onnx_server.url}/v2/health/ready")[0] == 200
    assert http("GET", f"{onnx_server.url}/v2/models/moons_h3/ready")[0] == 200
    status, _, body = http("GET", f"{onnx_server.url}/v2/models/moons_h3")
    assert status == 200 and json.loads(body)["platform"] == "edgekit-onnx"
    assert http("GET", f"{onnx_server.url}/v2/models/moons_h3-int8/ready")[0] == 404

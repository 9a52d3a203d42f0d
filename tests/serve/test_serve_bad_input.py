"""Bad requests get a 4xx with a one-line JSON error, and the server keeps serving.

Every case is sent to the real ``edgekit serve`` (TFLite, ``--max-batch-rows 512``); after each
one a good request must still be answered. A bad request sent while good ones are being
batched must not fail them (the guard checks each request before it joins a batch).
"""

from __future__ import annotations

import importlib.util
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _serve import http, post_json

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlserver") is None,
                                reason="edgekit serve needs the serve extra: pip install 'edgekit[serve]'")

V2 = "/v2/models/moons_h3/infer"
TFS = "/v1/models/moons_h3:predict"
GOOD = {"inputs": [{"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}


def _v2(name="features", shape=(1, 2), datatype="FP32", data=(0.5, 0.5)):
    return json.dumps({"inputs": [{"name": name, "shape": list(shape), "datatype": datatype,
                                   "data": list(data)}]}).encode()


def _bin(shape, size, blob_bytes, header_len=None):
    """A binary-extension body: JSON header claiming ``size`` bytes, then ``blob_bytes`` zero bytes."""
    head = json.dumps({"inputs": [{"name": "features", "shape": list(shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": size}}]}).encode()
    n = len(head) if header_len is None else header_len
    return head + b"\0" * blob_bytes, {"Inference-Header-Content-Length": str(n)}


# (label, method, path, body, headers, expected status, words the error must hold)
CASES = [
    ("v2 wrong shape", "POST", V2, _v2(shape=(1, 3), data=(1, 2, 3)), {}, 400, "wrong shape"),
    ("v2 rank 1", "POST", V2, _v2(shape=(2,)), {}, 400, "wrong shape"),
    ("v2 data does not fill the shape", "POST", V2, _v2(shape=(2, 2)), {}, 400, "does not fill its shape"),
    ("v2 wrong datatype", "POST", V2, _v2(datatype="INT32", data=(1, 2)), {}, 400, "wrong datatype"),
    ("v2 unknown datatype", "POST", V2, _v2(datatype="FP8"), {}, 400, "datatype"),
    ("v2 wrong input name", "POST", V2, _v2(name="x"), {}, 400, "input names do not match"),
    ("v2 strings as data", "POST", V2, _v2(data=("a", "b")), {}, 400, "non-numeric data"),
    ("v2 empty batch", "POST", V2, _v2(shape=(0, 2), data=()), {}, 400, "empty batch"),
    ("v2 unknown output", "POST", V2, json.dumps({**GOOD, "outputs": [{"name": "nope"}]}).encode(), {}, 400,
     "unknown output"),
    ("v2 malformed JSON", "POST", V2, b'{"inputs": [', {"Content-Type": "application/json"}, 400, "not valid JSON"),
    ("v2 malformed JSON, no content type", "POST", V2, b'{"inputs": [', {}, 400, "not valid JSON"),
    ("v2 not an inference request", "POST", V2, b'{"inputs": 3}', {}, 400, "not a v2 inference request"),
    ("v2 JSON array body", "POST", V2, b"[1, 2]", {}, 400, "not a v2 inference request"),
    ("v2 batch over --max-batch-rows", "POST", V2, _v2(shape=(513, 2), data=[0.0] * 1026), {}, 413, "limit"),
    ("v2 unknown model", "POST", "/v2/models/nosuch/infer", _v2(), {}, 404, "not found"),
    ("v2 unknown version", "POST", "/v2/models/moons_h3/versions/7/infer", _v2(), {}, 404, "version 7 not found"),
    ("v2 metadata of an unknown model", "GET", "/v2/models/nosuch", None, {}, 404, "not found"),
    ("binary: sizes run past the body", "POST", V2, *_bin((1, 2), 64, 8), 400, "runs past the body"),
    ("binary: bytes no input claims", "POST", V2, *_bin((1, 2), 8, 12), 400, "no input claims"),
    ("binary: not whole float32 values", "POST", V2, *_bin((1, 2), 7, 7), 400, "not whole"),
    ("binary: header length past the body", "POST", V2, *_bin((1, 2), 8, 8, header_len=999), 400, "out of range"),
    ("binary: header length not a number", "POST", V2, b"{}", {"Inference-Header-Content-Length": "x"}, 400,
     "malformed binary request"),
    ("binary: header is not JSON", "POST", V2, b"xx" + b"\0" * 8, {"Inference-Header-Content-Length": "2"}, 400,
     "not valid JSON"),
    ("binary: wrong shape", "POST", V2, *_bin((1, 4), 16, 16), 400, "wrong shape"),
    ("binary: unknown model", "POST", "/v2/models/nosuch/infer", *_bin((1, 2), 8, 8), 404, "not found"),
    ("binary: batch over the limit", "POST", V2, *_bin((513, 2), 4104, 4104), 413, "limit"),
    ("tfs wrong shape", "POST", TFS, b'{"instances": [[1, 2, 3]]}', {}, 400, "wrong shape"),
    ("tfs ragged rows", "POST", TFS, b'{"instances": [[1, 2], [3]]}', {}, 400, "not a rectangular tensor"),
    ("tfs strings", "POST", TFS, b'{"instances": [["a", "b"]]}', {}, 400, "wrong type"),
    ("tfs wrong input name", "POST", TFS, b'{"inputs": {"x": [[1, 2]]}}', {}, 400, "do not match"),
    ("tfs both instances and inputs", "POST", TFS, b'{"instances": [[1, 2]], "inputs": [[1, 2]]}', {}, 400,
     "either 'instances'"),
    ("tfs neither", "POST", TFS, b'{"signature_name": "serving_default"}', {}, 400, "either 'instances'"),
    ("tfs unknown signature", "POST", TFS, b'{"signature_name": "train", "instances": [[1, 2]]}', {}, 400,
     'Serving signature name: "train" not found'),
    ("tfs malformed JSON", "POST", TFS, b'{"instances": [[1, 2]', {}, 400, "not valid JSON"),
    ("tfs batch over the limit", "POST", TFS, json.dumps({"instances": [[0.0, 0.0]] * 513}).encode(), {}, 413,
     "limit"),
    ("tfs unknown model", "POST", "/v1/models/nosuch:predict", b'{"instances": [[1, 2]]}', {}, 404,
     "Servable not found for request: Latest(nosuch)"),
    ("tfs unknown version", "POST", "/v1/models/moons_h3/versions/2:predict", b'{"instances": [[1, 2]]}', {}, 404,
     "Servable not found for request: Specific(moons_h3, 2)"),
    ("tfs status of an unknown version", "GET", "/v1/models/moons_h3/versions/2", None, {}, 404, "not found"),
    ("tfs classify", "POST", "/v1/models/moons_h3:classify", b'{"examples": []}', {}, 400, "no classify signature"),
    ("tfs label", "GET", "/v1/models/moons_h3/labels/stable", None, {}, 404, "label"),
    ("tfs GET predict", "GET", TFS, None, {}, 405, "not allowed"),
]


@pytest.mark.parametrize("label,method,path,body,headers,status,says", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_a_one_line_json_error(tflite_server, label, method, path, body, headers, status, says):
    got, hdrs, raw = http(method, tflite_server.url + path, body, headers)
    assert got == status, (label, raw[:300])
    assert "json" in hdrs.get("Content-Type", hdrs.get("content-type", "")), hdrs
    err = json.loads(raw)
    assert set(err) == {"error"} and isinstance(err["error"], str) and err["error"].strip(), err
    assert "\n" not in err["error"] and len(err["error"]) < 600, err
    assert says in err["error"], err
    ok, answer = post_json(tflite_server.url + V2, GOOD)  # and it keeps serving
    assert ok == 200 and answer["outputs"][0]["shape"] == [2, 2], answer


def test_messages_say_what_got_and_expected(tflite_server):
    _, _, raw = http("POST", tflite_server.url + V2, _v2(shape=(1, 3), data=(1, 2, 3)))
    assert json.loads(raw)["error"] == "input 'features' has the wrong shape; got: [1, 3]; expected: [-1, 2]"
    _, _, raw = http("POST", tflite_server.url + V2, _v2(shape=(513, 2), data=[0.0] * 1026))
    assert "513 rows" in json.loads(raw)["error"] and "at most 512" in json.loads(raw)["error"]
    _, _, raw = http("POST", tflite_server.url + "/v1/models/nosuch:predict", b'{"instances": [[1, 2]]}')
    assert json.loads(raw) == {"error": "Servable not found for request: Latest(nosuch)"}


def test_grpc_bad_input_gets_a_status_and_the_server_keeps_serving(tflite_server):
    grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] comes with the serve extra")
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(tflite_server.grpc)
    cases = [(np.zeros((1, 3), np.float32), "FP32", "StatusCode.INVALID_ARGUMENT"),
             (np.zeros((1, 2), np.int32), "INT32", "StatusCode.INVALID_ARGUMENT"),
             (np.zeros((513, 2), np.float32), "FP32", "StatusCode.RESOURCE_EXHAUSTED")]
    for x, dt, code in cases:
        inp = grpcclient.InferInput("features", list(x.shape), dt)
        inp.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as err:
            client.infer("moons_h3", [inp])
        assert err.value.status() == code, err.value
    with pytest.raises(InferenceServerException) as err:
        client.infer("nosuch", [inp])
    assert err.value.status() == "StatusCode.NOT_FOUND"
    good = grpcclient.InferInput("features", [1, 2], "FP32")
    good.set_data_from_numpy(np.zeros((1, 2), np.float32))
    assert client.infer("moons_h3", [good]).as_numpy("output_0").shape == (1, 2)
    client.close()


def test_a_bad_request_does_not_fail_the_batch_it_arrives_with(tflite_server):
    x = np.random.default_rng(0).uniform(-1, 2, (64, 2)).astype(np.float32)

    def good(i):
        body = {"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": x[i].tolist()}]}
        return post_json(tflite_server.url + V2, body)

    def bad(i):
        return http("POST", tflite_server.url + V2, _v2(shape=(1, 3), data=(1, 2, 3)))[0]

    with ThreadPoolExecutor(16) as pool:  # concurrent, so the adaptive batcher merges them
        goods = [pool.submit(good, i) for i in range(64)]
        bads = [pool.submit(bad, i) for i in range(32)]
        answers = [f.result() for f in goods]
        assert [f.result() for f in bads] == [400] * 32
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:2]
    alone = post_json(tflite_server.url + V2, {"inputs": [{"name": "features", "shape": [64, 2], "datatype": "FP32",
                                                           "data": x.ravel().tolist()}]})[1]
    batch = np.asarray(alone["outputs"][0]["data"], np.float32).reshape(64, 2)
    rows = np.stack([np.asarray(a["outputs"][0]["data"], np.float32) for _, a in answers])
    np.testing.assert_array_equal(rows, batch)  # each answer is its own row, whatever it was batched with

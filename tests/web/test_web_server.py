"""The demo's HTTP server and `edgekit serve-web`: confinement, 404 listing, API, clean Ctrl-C."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from edgekit.web.server import BackgroundServer, make_server


@pytest.fixture(scope="module")
def fake_server(fake_artifacts):
    with BackgroundServer(fake_artifacts) as srv:
        yield srv


def raw_get(srv, path: str) -> tuple[int, str, str]:
    """GET ``path`` verbatim (no client-side normalisation of ``..``)."""
    host, port = srv.server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace")
    conn.close()
    return resp.status, resp.getheader("Content-Type") or "", body


@pytest.mark.parametrize("path", [
    "/../pyproject.toml",
    "/artifacts/../secret.txt",
    "/artifacts/alpha/../../secret.txt",
    "/artifacts/%2e%2e/secret.txt",
    "/artifacts/alpha/%2E%2E/%2e%2e/secret.txt",
    "/artifacts/alpha/..%2f..%2fsecret.txt",
    "/vendor/tfjs/..%2f..%2f..%2f..%2fpackage.json",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/artifacts/alpha/escape.txt",          # a symlink pointing outside the artifacts dir
    "/artifacts/alpha/%00example.json",
])
def test_paths_outside_the_served_dirs_get_403(fake_server, path):
    status, _, body = raw_get(fake_server, path)
    assert status == 403, (path, status)
    assert "outside the artifacts" not in body      # the secret's content never leaks


def test_files_inside_are_served(fake_server):
    status, ctype, body = raw_get(fake_server, "/artifacts/alpha/example.json")
    assert status == 200 and ctype.startswith("application/json") and json.loads(body)["name"] == "alpha"
    status, ctype, _ = raw_get(fake_server, "/vendor/tfjs/tf.min.js")
    assert status == 200 and ctype.startswith("text/javascript")
    status, ctype, _ = raw_get(fake_server, "/vendor/tfjs-backend-wasm/tfjs-backend-wasm-simd.wasm")
    assert status == 200 and ctype == "application/wasm"
    status, ctype, body = raw_get(fake_server, "/")
    assert status == 200 and ctype.startswith("text/html") and "/vendor/tfjs/tf.min.js" in body
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", body)      # nothing from the internet


@pytest.mark.parametrize("path", ["/artifacts/gamma/exports/manifest.json", "/api/gamma/reference.json",
                                  "/example/gamma"])
def test_missing_example_is_a_404_listing_the_examples(fake_server, path):
    status, ctype, body = raw_get(fake_server, path)
    assert status == 404 and ctype.startswith("text/html")
    assert "gamma" in body and "alpha" in body and "beta" in body


def test_api_lists_examples_with_exports(fake_server):
    status, _, body = raw_get(fake_server, "/api/examples")
    data = json.loads(body)
    assert status == 200
    assert [e["name"] for e in data["examples"]] == ["alpha", "beta"]
    assert data["examples"][0]["exports"][0] == {"format": "tfjs", "precision": "fp32",
                                                 "path": "tfjs/fp32", "size_bytes": 1}


def test_reference_json_is_the_npz(web_artifacts, server):
    import numpy as np

    from edgekit.parity.tolerance import lookup

    with urllib.request.urlopen(f"{server.url}/api/moons_h3/reference.json?precision=fp16") as r:
        data = json.load(r)
    with np.load(web_artifacts / "moons_h3" / "reference.npz", allow_pickle=False) as z:
        for key in z.files:
            got = np.asarray(data["arrays"][key]["data"], np.float32).reshape(data["arrays"][key]["shape"])
            np.testing.assert_array_equal(got, z[key])
    assert data["tolerance"]["atol"] == lookup("tfjs", "fp16").atol


def test_binds_localhost_by_default(fake_artifacts):
    srv = make_server(fake_artifacts)
    try:
        assert srv.server_address[0] == "127.0.0.1"
    finally:
        srv.server_close()


def _default_sigint() -> None:
    # a test run started in the background (nohup, `cmd &`) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: give the child the disposition a terminal would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgekit", "serve-web", *args], preexec_fn=_default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_exits_cleanly(fake_artifacts):
    proc = _start_cli("--artifacts", str(fake_artifacts), "--port", "0")
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line and "2 examples" in line, line + proc.stderr.read()
        url = re.search(r"http://\S+/", line).group(0)
        with urllib.request.urlopen(url + "api/examples", timeout=10) as r:
            assert r.status == 200
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err and "stopped" in err


def test_missing_artifacts_dir_is_one_line_exit_2(tmp_path):
    proc = _start_cli("--artifacts", str(tmp_path / "nope"), "--port", "0")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "artifacts directory not found" in err and "Traceback" not in err and len(err.splitlines()) == 1


def _post(server, path: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(f"{server.url}{path}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_compare_endpoint_is_the_one_comparator(web_artifacts, server):
    """The page's verdict comes from parity.compare: exact outputs pass, a perturbed one fails
    with the smallest atol that would pass, and bad requests get a 4xx while the server serves on."""
    import numpy as np

    from edgekit.parity.tolerance import lookup

    with np.load(web_artifacts / "moons_h3" / "reference.npz", allow_pickle=False) as z:
        ref = z["output_0"].astype(np.float64)

    def body(arr):
        return json.dumps({"outputs": {"output_0": {"shape": list(arr.shape), "data": arr.ravel().tolist()}}}).encode()

    status, res = _post(server, "/api/moons_h3/compare?precision=fp32", body(ref))
    assert status == 200 and res["passed"] is True and res["max_abs_err"] == 0.0
    assert res["tolerance"]["atol"] == lookup("tfjs", "fp32").atol
    bad = ref.copy()
    bad[3, 0] += 0.25
    status, res = _post(server, "/api/moons_h3/compare?precision=fp32", body(bad))
    assert status == 200 and res["passed"] is False
    assert res["max_abs_err"] == pytest.approx(0.25, abs=1e-6) and res["required_atol"] == pytest.approx(0.25, abs=1e-6)
    assert any("output_0" in f for f in res["failures"])
    for path, payload, code in [("/api/moons_h3/compare", b"{not json", 400),
                                ("/api/moons_h3/compare", b'{"outputs": 3}', 400),
                                ("/api/moons_h3/compare?precision=int4", body(ref), 400),
                                ("/api/nosuch/compare", body(ref), 404),
                                ("/api/moons_h3/other", body(ref), 404)]:
        status, res = _post(server, path, payload)
        assert status == code and res.get("error"), (path, status, res)
    with urllib.request.urlopen(f"{server.url}/api/examples") as r:  # still serving
        assert r.status == 200

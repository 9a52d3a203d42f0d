"""Helpers of the serve tests: HTTP with the standard library, and a real ``edgekit serve`` process.

``ServeProcess`` starts ``python -m edgekit serve ...`` on free 127.0.0.1 ports in its own
process group, waits for ``/v2/health/ready`` and stops it (SIGTERM, then SIGKILL of its group
if it does not exit within 20 s).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

EXAMPLES = ("moons_h3", "regression_mlp")
FORMATS = ["tflite", "onnx"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30) -> tuple[int, dict, bytes]:
    """One HTTP request with the standard library: (status, headers, body); HTTP errors are returned."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post_json(url: str, data: object) -> tuple[int, object]:
    status, _, body = http("POST", url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


class ServeProcess:
    """A running ``edgekit serve`` (use as a context manager); its output goes to a temporary file
    (a pipe nobody reads could fill and block the server)."""

    def __init__(self, *args: str, ready_timeout: float = 90):
        self.serve_args = list(args)
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.output = ""
        self._pick_ports()

    def _pick_ports(self) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        while self.grpc_port == self.port:
            self.grpc_port = free_port()
        self.args = [sys.executable, "-m", "edgekit", "serve", *self.serve_args, "--port", str(self.port),
                     "--grpc-port", str(self.grpc_port)]
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc = f"127.0.0.1:{self.grpc_port}"

    def __enter__(self) -> "ServeProcess":
        for attempt in range(3):  # a free port can be taken by another test between probe and bind
            self._log = tempfile.TemporaryFile(mode="w+")
            self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
            deadline = time.monotonic() + self.ready_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    out = self._read()
                    if "cannot listen" in out and attempt < 2:
                        self._pick_ports()
                        break
                    raise RuntimeError(f"edgekit serve exited {self.proc.returncode}: {out[-2000:]}")
                try:
                    if http("GET", f"{self.url}/v2/health/ready", timeout=2)[0] == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.25)
            else:
                self.stop()
                raise RuntimeError(f"edgekit serve not ready within {self.ready_timeout} s")
        raise RuntimeError("edgekit serve found no free port")

    def _read(self) -> str:
        self._log.seek(0)
        out = self._log.read()
        self._log.close()
        return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> str:
        """Stop the server (SIGTERM, then SIGKILL of its process group after 20 s); return what it printed."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self._read() if not self._log.closed else ""

    def __exit__(self, *exc) -> None:
        self.output = self.stop()

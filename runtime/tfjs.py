"""TF.js adapter: the graph model executed by ``@tensorflow/tfjs`` in Node.js (cpu or wasm backend).

One persistent Node process per backend (``runtime/tfjs_runner.cjs``) serves every TF.js
runner of this Python process: models are loaded once per runner, each ``predict`` chunk is
one request carrying whole arrays as raw bytes (dtype + shape in a JSON header, so NaN/Inf
survive), never one process or one request per row. The processes are closed at exit.
Node's stderr is kept (last lines) and put into every error.

Node is found as ``$EDGEKIT_NODE`` or ``node`` on PATH; the npm packages in
``$EDGEKIT_NODE_MODULES`` or the user cache that ``edgekit setup-js`` fills (:mod:`edgekit.runtime.jsdeps`).
In a browser the same model runs with::

    const model = await tf.loadGraphModel("model/model.json");
    const y = await model.executeAsync({features: tf.tensor2d(x)}, ["output_0"]);
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import select
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from edgekit.core.errors import DependencyError, InputError, RuntimeFailure, UsageError
from edgekit.runtime.base import Runner, TensorInfo
from edgekit.runtime.jsdeps import INSTALL_HINT, node_modules_dir
from edgekit.runtime.registry import register

RUNNER_JS = Path(__file__).with_name("tfjs_runner.cjs")
BACKENDS = ("cpu", "wasm")
WIRE_DTYPES = ("float32", "int32", "bool")
_PREFIX = struct.Struct("<II")


def node_executable() -> str:
    """Path of the ``node`` binary (``$EDGEKIT_NODE`` or PATH).

    Raises:
        DependencyError: Node.js is not installed.
    """
    node = os.environ.get("EDGEKIT_NODE") or shutil.which("node")
    if not node or not Path(node).exists():
        raise DependencyError("Node.js is needed to run TF.js models", got=node or "no `node` on PATH",
                              expected=f"Node.js >= 20 on PATH (or $EDGEKIT_NODE), then {INSTALL_HINT}")
    return node


class NodeServer:
    """One Node process running ``tfjs_runner.cjs`` for one backend; requests are serialised.

    Args:
        backend: ``"cpu"`` or ``"wasm"``.
        timeout: seconds to wait for any one reply (default 300.0).
    """

    def __init__(self, backend: str, timeout: float = 300.0):
        self.backend = backend
        self.timeout = timeout
        self.pid_owner = os.getpid()
        self._lock = threading.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=60)
        self._next_id = 0
        node, modules = node_executable(), node_modules_dir(backend)
        env = {**os.environ, "NODE_PATH": str(modules)}
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([node, str(RUNNER_JS), "--backend", backend],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self._err_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_thread.start()
        hello, _ = self.request({"op": "hello"})
        if hello.get("backend") != backend:
            self.close()
            raise RuntimeFailure("TF.js runner started on the wrong backend", got=hello.get("backend"),
                                 expected=backend)
        self.start_seconds = time.perf_counter() - t0
        self.tfjs_version = hello.get("tfjs", "?")
        self.node_version = hello.get("node", "?")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None and self.pid_owner == os.getpid()

    def _drain_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def stderr_tail(self, n: int = 12) -> str:
        lines = [s for s in list(self._stderr)[-n:] if s.strip()]
        return " | ".join(lines) if lines else "(no stderr)"

    def request(self, header: dict, payload: bytes = b"") -> tuple[dict, bytearray]:
        """Send one request, return the reply header and payload.

        Raises:
            RuntimeFailure: the process died, timed out or answered with an error (with stderr).
        """
        with self._lock:
            self._next_id += 1
            header = {**header, "id": self._next_id}
            head = json.dumps(header).encode()
            try:
                self.proc.stdin.write(_PREFIX.pack(len(head), len(payload)) + head)
                if payload:
                    self.proc.stdin.write(payload)
                self.proc.stdin.flush()
                hlen, blen = _PREFIX.unpack(self._read(_PREFIX.size))
                reply = json.loads(bytes(self._read(hlen)))
                body = self._read(blen)
            except (OSError, ValueError) as exc:
                self._died(f"{type(exc).__name__}: {exc}")
        if not reply.get("ok"):
            raise RuntimeFailure(f"TF.js ({self.backend}) failed on {header['op']}: {reply.get('error')}",
                                 got=f"node stderr: {self.stderr_tail()}")
        return reply, body

    def _read(self, n: int) -> bytearray:
        buf = bytearray()
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                self._died(f"no reply within {self.timeout:.0f} s")
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
            if not chunk:
                self._died("the process closed its output")
            buf += chunk
        return buf

    def _died(self, why: str):
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._err_thread.join(timeout=2)
        raise RuntimeFailure(f"TF.js runner (node, {self.backend} backend) stopped: {why}, exit code {code}",
                             got=f"node stderr: {self.stderr_tail()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


_SERVERS: dict[str, NodeServer] = {}
_SERVERS_LOCK = threading.Lock()


def get_server(backend: str) -> NodeServer:
    """The shared Node process for ``backend``, started on first use (or after it died)."""
    with _SERVERS_LOCK:
        server = _SERVERS.get(backend)
        if server is None or not server.alive:
            server = _SERVERS[backend] = NodeServer(backend)
        return server


@atexit.register
def close_servers() -> None:
    """Stop every shared Node process started by this Python process."""
    with _SERVERS_LOCK:
        for server in _SERVERS.values():
            if server.pid_owner == os.getpid():
                server.close()
        _SERVERS.clear()


@register
class TfjsRunner(Runner):
    """Runs a TF.js graph model directory (``model.json`` + weight shards) in Node.js.

    Options:
        backend: ``"cpu"`` (default) or ``"wasm"``.
    """

    format = "tfjs"
    OPTIONS = {"backend": "cpu"}

    def __init__(self, path, **options):
        super().__init__(path, **options)
        if self.options["backend"] not in BACKENDS:
            raise UsageError("unknown TF.js backend", got=self.options["backend"], expected=list(BACKENDS))
        self._server: NodeServer | None = None
        self._request_op: dict | None = None  # {"op": "execute", "names": [...]} while exposing intermediates

    def _load(self) -> None:
        if not (self.path / "model.json").is_file():
            raise InputError("TF.js model directory has no model.json", got=str(self.path),
                             expected="a directory written by tensorflowjs_converter")
        self._server = get_server(self.options["backend"])
        self._open()

    def _open(self) -> None:
        reply, _ = self._server.request({"op": "load", "dir": str(self.path.resolve())})
        self._handle = reply["handle"]
        self.inputs = [TensorInfo.from_dict(t) for t in reply["inputs"]]
        self.outputs = [TensorInfo.from_dict(t) for t in reply["outputs"]]
        self.runtime_name = f"tfjs {self._server.tfjs_version} node {self.options['backend']}"

    def _predict_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._server.alive:  # the shared process died after an earlier failure: reload
            self._server = get_server(self.options["backend"])
            self._open()
        arrays, blobs, offset = [], [], 0
        for name, arr in feeds.items():
            if arr.dtype.kind in "iu" and arr.dtype.name not in WIRE_DTYPES:
                # issue 11: TF.js runs int64/uint8/int8/int16 tensors as int32 (it has no other
                # integer dtype): send the same values as int32, refusing any that int32 cannot hold
                cast = arr.astype(np.int32)
                if not np.array_equal(cast, arr):
                    raise InputError(f"input {name!r} holds values int32 (TF.js' only integer dtype) cannot "
                                     "hold", got=f"{arr.dtype.name} in [{arr.min()}, {arr.max()}]",
                                     expected="values within int32")
                arr = cast
            if arr.dtype.name not in WIRE_DTYPES:
                raise InputError(f"TF.js cannot take input {name!r} of this dtype", got=arr.dtype.name,
                                 expected=list(WIRE_DTYPES))
            data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            arrays.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape),
                           "offset": offset, "nbytes": len(data)})
            blobs.append(data)
            offset += len(data)
        request = {**(self._request_op or {"op": "predict"}), "handle": self._handle, "arrays": arrays}
        reply, body = self._server.request(request, b"".join(blobs))
        result = {}
        declared = {o.name: np.dtype(o.dtype) for o in self.outputs}
        for a in reply["arrays"]:
            dtype = np.dtype(a["dtype"]).newbyteorder("<")
            count = a["nbytes"] // dtype.itemsize
            arr = np.frombuffer(body, dtype=dtype, count=count, offset=a["offset"]).reshape(a["shape"])
            want = declared.get(a["name"])
            # TF.js has no int64 tensors: an int64 output (tf.argmax's default) comes back as int32.
            # The values are the same integers: hand them back in the dtype the model declares.
            if want is not None and want.kind in "iu" and arr.dtype.kind in "iu" and want != arr.dtype:
                arr = arr.astype(want)
            result[a["name"]] = arr
        return result

    # ---------------------------------------------------------------- intermediates (edgekit explain)
    supports_intermediates = True

    def _intermediates_impl(self, feeds: dict[str, np.ndarray]):
        """Every computing node of the graph (``model.json`` order: topological), run with
        ``model.executeAsync(inputs, nodeNames)`` on this backend."""
        import json

        from edgekit.runtime.intermediates import Intermediates, Producer

        topo = json.loads((self.path / "model.json").read_text()).get("modelTopology") or {}
        nodes = [n for n in topo.get("node", []) if n.get("op") not in ("Const", "Placeholder", "NoOp")]
        consts = {n["name"] for n in topo.get("node", []) if n.get("op") == "Const"}
        names = [n["name"] for n in nodes]
        saved = self._request_op
        self._request_op = {"op": "execute", "names": names}
        try:
            values = self._predict_impl(feeds)
        finally:
            self._request_op = saved
        producers = {n["name"]: Producer(n["op"], n["name"], tuple(i.split(":")[0].lstrip("^")
                                                                   for i in n.get("input", [])
                                                                   if i.split(":")[0].lstrip("^") not in consts))
                     for n in nodes}
        ordered = {n: values[n] for n in names if n in values}
        outputs = {o.name: o.name for o in self.outputs if o.name in ordered}
        return Intermediates(ordered, producers, outputs=outputs)

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None and server.alive and getattr(self, "_handle", None) is not None:
            try:
                server.request({"op": "dispose", "handle": self._handle})
            except RuntimeFailure:
                pass

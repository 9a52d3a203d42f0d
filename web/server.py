"""A small local HTTP server for the web demo: the page, TF.js from the npm cache, the artifacts.

Standard library only at import time (numpy is imported lazily to turn ``reference.npz``
into JSON). Nothing is fetched from the internet: TF.js is served from the ``node_modules``
that ``edgekit setup-js`` installed (:func:`edgekit.runtime.jsdeps.modules_root`).

Routes::

    /                          the demo page (web/index.html); ?example=NAME&backend=B&precision=P
    /<file>                    other files of web/ (app.js, style.css)
    /example/<name>            the page for one example (404 listing the examples if unknown)
    /vendor/tfjs/<file>        node_modules/@tensorflow/tfjs/dist
    /vendor/tfjs-backend-wasm/<file>   node_modules/@tensorflow/tfjs-backend-wasm/dist
    /artifacts/<name>/<path>   files of ARTIFACTS/<name>/ (exports, example.json, plots)
    /api/examples              JSON: every example with its task, tensors and exports
    /api/<name>/reference.json?precision=P   reference.npz as JSON, with the TF.js tolerance
    POST /api/<name>/compare?precision=P     the page's outputs judged by edgekit.parity.compare

Any path that leaves its root (``..``, ``%2e%2e``, an absolute path, a symlink pointing
outside) gets 403; an unknown example gets a 404 page listing the available ones.
"""

from __future__ import annotations

import html
import json
import mimetypes
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from edgekit.core.paths import PathEscape
from edgekit.core.paths import confine as _confine

#: the page (index.html, app.js, style.css), shipped as package data.
WEB_DIR = Path(__file__).resolve().with_name("static")
VENDOR = {
    "tfjs": Path("@tensorflow/tfjs/dist"),
    "tfjs-backend-wasm": Path("@tensorflow/tfjs-backend-wasm/dist"),
}
#: largest POST body accepted (the outputs of one example's golden rows; bytes).
MAX_POST_BYTES = 16 << 20

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/json", ".json")
mimetypes.add_type("application/octet-stream", ".bin")


class Forbidden(Exception):
    """A request path that would leave its root directory."""


def tolerance(fmt: str, precision: str) -> dict:
    """The tolerance policy's entry for a variant, as data for the page.

    ``{"atol", "rtol", "atol_scale", "max_metric_drop", "source"}`` straight from
    :func:`edgekit.parity.tolerance.lookup` (the one policy); ``atol_scale="peak"`` means the
    atol is multiplied by ``max(1, max |keras output|)``, as :mod:`edgekit.parity.compare` does.

    Raises:
        UsageError: unknown variant.
    """
    from edgekit.parity.tolerance import lookup

    tol = lookup(fmt, precision)
    return {"atol": float(tol.atol), "rtol": float(tol.rtol), "atol_scale": tol.atol_scale,
            "max_metric_drop": tol.max_metric_drop, "source": "edgekit.parity.tolerance"}


def compare(reference: Path, precision: str, outputs: dict) -> dict:
    """Judge the page's outputs against ``reference.npz`` with the one comparator.

    Args:
        reference: the example's ``reference.npz`` (keys ``out:<name>``, or plain names).
        precision: the TF.js variant's precision (selects the tolerance).
        outputs: ``{output name: {"shape": [...], "data": [...]}}`` as the page sends them.

    Returns:
        :meth:`edgekit.parity.compare.CompareResult.to_dict` plus ``summary``, ``max_abs_err``,
        ``required_atol`` and ``tolerance``.

    Raises:
        ValueError: malformed outputs (the handler answers 400).
    """
    import numpy as np

    from edgekit.parity.compare import compare_outputs
    from edgekit.parity.tolerance import tolerances_for

    with np.load(reference, allow_pickle=False) as npz:
        ref = {k.removeprefix("out:"): npz[k] for k in npz.files if k.startswith("out:")} or \
              {k: npz[k] for k in npz.files}
    got = {}
    for name, arr in outputs.items():
        if not isinstance(arr, dict) or "data" not in arr or "shape" not in arr:
            raise ValueError(f"output {name!r} must be {{'shape': [...], 'data': [...]}}")
        got[name] = np.asarray(arr["data"], dtype=np.float64).reshape(arr["shape"])
    want = {k: ref[k] for k in got if k in ref} or ref
    got = {k: v.astype(want[k].dtype) if k in want else v for k, v in got.items()}
    result = compare_outputs(got, want, tolerances_for("tfjs", precision, list(want)))
    return {**result.to_dict(), "summary": result.summary(), "max_abs_err": result.max_abs_err,
            "required_atol": result.required_atol, "tolerance": tolerance("tfjs", precision)}


def confine(root: Path, rel: str) -> Path:
    """Resolve the URL-decoded relative path ``rel`` under ``root`` (:func:`edgekit.core.paths.confine`).

    Raises:
        Forbidden: for ``..`` segments, absolute paths, NUL bytes, backslashes or a
            resolved path (after symlinks) outside ``root``.
    """
    try:
        return _confine(root, rel, allow_empty=True)
    except PathEscape:
        raise Forbidden(rel) from None


@dataclass
class Site:
    """What the server serves: the artifacts, the page and the vendored TF.js."""

    artifacts: Path
    web_dir: Path = WEB_DIR
    node_modules: Path | None = None  # default: edgekit.runtime.jsdeps.node_modules_dir()

    def examples(self) -> list[str]:
        """Names of example directories (those holding ``example.json``), sorted."""
        if not self.artifacts.is_dir():
            return []
        return sorted(p.name for p in self.artifacts.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / "example.json").is_file())

    def describe(self, name: str) -> dict:
        """One example's card: example.json fields plus its TF.js exports (and failures)."""
        ex = self.artifacts / name
        try:
            info = json.loads((ex / "example.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            return {"name": name, "error": f"example.json unreadable: {exc}", "exports": []}
        exports, failures, manifest_error = [], [], None
        mpath = ex / "exports" / "manifest.json"
        if mpath.is_file():
            try:
                data = json.loads(mpath.read_text())
                exports = [{k: a.get(k) for k in ("format", "precision", "path", "size_bytes")}
                           for a in data.get("artifacts", []) if isinstance(a, dict)]
                failures = list(data.get("failures", []))
            except (OSError, json.JSONDecodeError, AttributeError) as exc:
                manifest_error = f"exports/manifest.json unreadable: {exc}"
        else:
            manifest_error = "no exports/manifest.json: run edgekit export"
        return {"name": name, "task": info.get("task"), "metric": info.get("metric"),
                "labels": info.get("labels"), "inputs": info.get("inputs", []),
                "outputs": info.get("outputs", []), "reference": info.get("reference", {}),
                "exports": exports, "failures": failures, "manifest_error": manifest_error,
                "has_reference": (ex / "reference.npz").is_file()}

    def reference_json(self, name: str, precision: str = "fp32") -> dict:
        """``reference.npz`` as JSON ({key: {"shape", "data"}}), plus the TF.js tolerance."""
        import numpy as np

        path = self.artifacts / name / "reference.npz"
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: {"shape": list(npz[k].shape), "data": npz[k].astype(np.float64).ravel().tolist()}
                      for k in npz.files}
        return {"example": name, "precision": precision, "arrays": arrays,
                "tolerance": tolerance("tfjs", precision)}


class Handler(BaseHTTPRequestHandler):
    """Routes GET/HEAD (and the compare POST) of one :class:`Site` (set on the server as ``server.site``)."""

    server_version = "edgekit-web"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server API
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    @property
    def site(self) -> Site:
        return self.server.site  # type: ignore[attr-defined]

    def do_HEAD(self) -> None:  # noqa: N802 - http.server API
        self._dispatch(head=True)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._dispatch(head=False)

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        """``POST /api/<name>/compare?precision=P``: the page's outputs judged by parity.compare."""
        self._head = False
        url = urlsplit(self.path)
        parts = unquote(url.path).strip("/").split("/")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if len(parts) != 3 or parts[0] != "api" or parts[2] != "compare":
                return self._json_error(HTTPStatus.NOT_FOUND, f"no POST endpoint {url.path}")
            name = parts[1]
            if name not in self.site.examples():
                return self._json_error(HTTPStatus.NOT_FOUND, f"unknown example {name!r}")
            ref = self.site.artifacts / name / "reference.npz"
            if not ref.is_file():
                return self._json_error(HTTPStatus.NOT_FOUND, f"{name} has no reference.npz")
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_POST_BYTES:
                return self._json_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length else HTTPStatus.BAD_REQUEST,
                                        f"body of {length} bytes; expected 1..{MAX_POST_BYTES}")
            try:
                body = json.loads(self.rfile.read(length))
                outputs = body["outputs"]
                if not isinstance(outputs, dict):
                    raise ValueError("outputs must be an object")
                result = compare(ref, query.get("precision", "fp32"), outputs)
            except (ValueError, KeyError, TypeError) as exc:
                return self._json_error(HTTPStatus.BAD_REQUEST, f"bad compare request: {exc}")
            except Exception as exc:  # noqa: BLE001 - e.g. an unknown precision: answer, keep serving
                return self._json_error(HTTPStatus.BAD_REQUEST, str(exc))
            return self._json(result)
        except (BrokenPipeError, ConnectionResetError):
            return None

    def _json_error(self, status: HTTPStatus, message: str) -> None:
        self._send(int(status), json.dumps({"error": message}).encode(), "application/json")

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        self._head = head
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if "\x00" in path or any(seg == ".." for seg in path.replace("\\", "/").split("/")):
                raise Forbidden(path)
            self._route(path, query)
        except Forbidden:
            self._error(HTTPStatus.FORBIDDEN, "Forbidden", "This path is outside the served directories.")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, path: str, query: dict) -> None:
        if path in ("/", "/index.html"):
            return self._file(confine(self.site.web_dir, "index.html"))
        if path == "/api/examples":
            names = self.site.examples()
            return self._json({"artifacts": str(self.site.artifacts),
                               "examples": [self.site.describe(n) for n in names]})
        head, _, rest = path.lstrip("/").partition("/")
        if head == "api":
            name, _, leaf = rest.partition("/")
            if not self._known(name):
                return None
            if leaf == "reference.json":
                if not (self.site.artifacts / name / "reference.npz").is_file():
                    return self._error(HTTPStatus.NOT_FOUND, "No reference",
                                       f"{name} has no reference.npz: re-run edgekit train")
                return self._json(self.site.reference_json(name, query.get("precision", "fp32")))
            return self._error(HTTPStatus.NOT_FOUND, "Not found", f"no API endpoint {html.escape(path)}")
        if head == "example":
            name = rest.strip("/")
            if self._known(name):
                self._file(confine(self.site.web_dir, "index.html"))
            return None
        if head == "artifacts":
            name, _, leaf = rest.partition("/")
            if not name:
                return self._redirect("/")
            target = confine(self.site.artifacts, rest)  # 403 before revealing what exists
            if not self._known(name):
                return None
            return self._file(target)
        if head == "vendor":
            pkg, _, leaf = rest.partition("/")
            if pkg not in VENDOR:
                return self._error(HTTPStatus.NOT_FOUND, "Not found",
                                   f"no vendored package {html.escape(pkg)}")
            return self._file(confine(self.site.node_modules / VENDOR[pkg], leaf))
        return self._file(confine(self.site.web_dir, path.lstrip("/")))

    def _known(self, name: str) -> bool:
        """True if ``name`` is an example; otherwise send the 404 page listing the examples."""
        if name and "/" not in name and name in self.site.examples():
            return True
        names = self.site.examples()
        items = "".join(f'<li><a href="/?example={html.escape(n)}">{html.escape(n)}</a></li>' for n in names)
        body = (f"<p>No example named <code>{html.escape(name)}</code> in "
                f"<code>{html.escape(str(self.site.artifacts))}</code>.</p>"
                + (f"<p>Available examples:</p><ul>{items}</ul>" if names else
                   "<p>No examples there: run <code>edgekit train all --out DIR</code> and "
                   "<code>edgekit export</code>.</p>"))
        self._error(HTTPStatus.NOT_FOUND, "Example not found", body, raw=True)
        return False

    # -- responses -------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def _json(self, data: object) -> None:
        self._send(200, json.dumps(data).encode(), "application/json")

    def _redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", {"Location": location})

    def _error(self, status: HTTPStatus, title: str, message: str, raw: bool = False) -> None:
        text = message if raw else f"<p>{message}</p>"
        body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{int(status)} {title}</title>"
                "<link rel='icon' href='data:,'><link rel='stylesheet' href='/style.css'></head>"
                f"<body><h1>{int(status)} {title}</h1>{text}"
                f"<p><a href='/'>edgekit web demo</a></p></body></html>").encode()
        self._send(int(status), body, "text/html; charset=utf-8")

    def _file(self, path: Path) -> None:
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            return self._error(HTTPStatus.NOT_FOUND, "Not found",
                               f"{html.escape(self.path)} does not exist.")
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith(("json", "javascript")):
            ctype += "; charset=utf-8"
        self._send(200, path.read_bytes(), ctype)


def make_server(artifacts: Path, host: str = "127.0.0.1", port: int = 0, verbose: bool = False,
                web_dir: Path = WEB_DIR, node_modules: Path | None = None) -> ThreadingHTTPServer:
    """Create (bind) the server; ``port=0`` picks a free port (read ``server.server_address``).

    Args:
        artifacts: the directory holding ``<example>/`` directories.
        host: interface to bind (default ``127.0.0.1``: this machine only).
        port: TCP port (default 0: any free port).
        verbose: log each request to stderr (default False).
        web_dir: the page's directory (default: the shipped ``edgekit/web/static``).
        node_modules: where ``@tensorflow/tfjs`` is installed (default:
            :func:`edgekit.runtime.jsdeps.modules_root`).
    """
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if node_modules is None:
        from edgekit.runtime.jsdeps import modules_root

        node_modules = modules_root()
    server.site = Site(Path(artifacts).resolve(), Path(web_dir), Path(node_modules))  # type: ignore[attr-defined]
    server.verbose = verbose  # type: ignore[attr-defined]
    return server


class BackgroundServer:
    """Context manager running :func:`make_server` in a daemon thread; ``.url`` is its base URL."""

    def __init__(self, artifacts: Path, **kwargs) -> None:
        self.server = make_server(artifacts, **kwargs)
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="edgekit-web", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


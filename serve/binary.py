"""The binary tensor data extension of the v2 REST protocol, which MLServer 1.7.1 lacks.

Triton's clients (``tritonclient.http``) send tensors as raw bytes by default: the body is a
JSON header of ``Inference-Header-Content-Length`` bytes followed by each input's
little-endian data (``parameters.binary_data_size`` says how much belongs to which input), and
they ask for outputs the same way (``parameters.binary_data_output`` on the request, or
``parameters.binary_data`` per requested output). MLServer parses every body as JSON and answers
such a request with a 422. :class:`BinaryTensorMiddleware` (an ASGI middleware in front of
MLServer's app) takes every ``/v2/models/.../infer`` request that uses the extension — binary
inputs, or binary outputs asked for — decodes it, runs it through MLServer's data plane (the
same guard, adaptive batcher and runtime as any other request) and encodes the answer:
a JSON header (``Inference-Header-Content-Length``) followed by the binary outputs. Plain JSON
requests pass through to MLServer untouched. Errors are ``{"error": "..."}`` with the data
plane's status code (400 bad input, 404 unknown model, 413 batch over the limit).
"""

from __future__ import annotations

import gzip
import json
import re
import zlib

import numpy as np
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest
from pydantic import ValidationError

from edgekit.serve.plan import NUMPY_DTYPES

INFER_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")
HEADER = b"inference-header-content-length"
#: the largest request body read (default 256 MiB; ``edgekit serve --max-body-mb``).
DEFAULT_MAX_BODY = 256 << 20


def _dtype(datatype: str) -> np.dtype:
    if datatype not in NUMPY_DTYPES:
        raise MLServerError(f"binary tensor datatype not supported; got: {datatype}; "
                            f"expected: one of {sorted(NUMPY_DTYPES)}", 400)
    return np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")


def decode(body: bytes, header_len: int | None) -> tuple[dict, dict[str, bool]]:
    """Split a request into its JSON header with inputs as lists, and which outputs go back binary.

    Raises:
        MLServerError: (400) malformed header, sizes that do not add up, unknown datatype.
    """
    end = len(body) if header_len is None else header_len
    if not 0 <= end <= len(body):
        raise MLServerError(f"Inference-Header-Content-Length is out of range; got: {header_len}; "
                            f"expected: 0..{len(body)} (the body's size)", 400)
    try:
        head = json.loads(body[:end])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MLServerError(f"request header is not valid JSON; got: {exc}; expected: a v2 inference request",
                            400) from None
    if not isinstance(head, dict) or not isinstance(head.get("inputs"), list):
        raise MLServerError("request header is not an inference request; expected: a JSON object with 'inputs'", 400)
    offset = end
    for inp in head["inputs"]:
        params = inp.get("parameters") if isinstance(inp, dict) else None
        if not isinstance(params, dict) or params.get("binary_data_size") is None:
            continue
        size = params["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(body):
            raise MLServerError(f"binary_data_size of input {inp.get('name')!r} runs past the body; got: {size} "
                                f"bytes at offset {offset}; expected: at most {len(body) - offset}", 400)
        dtype = _dtype(str(inp.get("datatype")))
        blob = body[offset:offset + size]
        offset += size
        if size % dtype.itemsize:
            raise MLServerError(f"binary data of input {inp.get('name')!r} is not whole {inp.get('datatype')} "
                                f"values; got: {size} bytes", 400)
        inp["data"] = np.frombuffer(blob, dtype=dtype).tolist()
        del params["binary_data_size"]
    if offset != len(body):
        raise MLServerError(f"request body has bytes no input claims; got: {len(body) - offset} extra bytes", 400)
    req_params = head.get("parameters")
    every = bool(req_params.pop("binary_data_output", False)) if isinstance(req_params, dict) else False
    wanted = {}
    for out in head.get("outputs") or []:
        oparams = out.get("parameters") if isinstance(out, dict) else None
        if isinstance(oparams, dict) and "binary_data" in oparams:
            wanted[str(out.get("name"))] = bool(oparams.pop("binary_data"))
    wanted[""] = every
    return head, wanted


def encode(response: dict, wanted: dict[str, bool]) -> tuple[bytes, int | None]:
    """Body of the answer and the length of its JSON header (None when no output is binary)."""
    blobs = []
    for out in response.get("outputs", []):
        if not wanted.get(out["name"], wanted.get("", False)):
            continue
        arr = np.asarray(out.pop("data"), dtype=_dtype(out["datatype"]))
        blob = arr.tobytes()
        out.setdefault("parameters", {})["binary_data_size"] = len(blob)
        blobs.append(blob)
    head = json.dumps(response).encode()
    return (head + b"".join(blobs), len(head)) if blobs else (head, None)


class BinaryTensorMiddleware:
    """ASGI middleware answering v2 infer requests that use the binary tensor extension.

    Args:
        app: MLServer's ASGI app (everything else goes to it).
        data_plane: MLServer's :class:`~mlserver.handlers.DataPlane`.
        max_body: largest request body accepted, in bytes (default ``DEFAULT_MAX_BODY``).
    """

    def __init__(self, app, data_plane, max_body: int = DEFAULT_MAX_BODY):
        self.app = app
        self.data_plane = data_plane
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        match = INFER_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await _reply(send, 413, _error(f"request body is over this server's limit; got: more than "
                                                      f"{self.max_body} bytes; expected: edgekit serve "
                                                      f"--max-body-mb"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        header_len = headers.get(HEADER)
        if header_len is None and b"binary_data" not in body:  # plain JSON: MLServer's own handler
            if b"json" not in headers.get(b"content-type", b""):
                # a v2 body is JSON whatever it is labelled (curl -d says form-urlencoded): without
                # this FastAPI would not parse it and answer every such request with a 400 on "body"
                scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                         + [(b"content-type", b"application/json")]}
            return await self.app(scope, _replay(body, receive), send)
        try:
            body = _inflate(body, headers.get(b"content-encoding", b"").decode("latin-1").lower())
            n = None if header_len is None else int(header_len)
            head, wanted = decode(body, n)
            payload = InferenceRequest.model_validate(head)
            result = await self.data_plane.infer(payload, match["name"], match["version"])
        except MLServerError as exc:
            return await _reply(send, exc.status_code, _error(str(exc)))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err.get("loc", ()))
            return await _reply(send, 400, _error(f"request is not a v2 inference request; got: {where}: "
                                                  f"{err.get('msg')}"))
        except ValueError as exc:
            return await _reply(send, 400, _error(f"malformed binary request; got: {exc}"))
        out, length = encode(result.model_dump(exclude_none=True), wanted)
        extra = [] if length is None else [(b"inference-header-content-length", str(length).encode())]
        ctype = b"application/json" if length is None else b"application/octet-stream"
        return await _reply(send, 200, out, ctype, extra)


def _inflate(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


def _replay(body: bytes, receive):
    """A ``receive`` that hands the already-read body over once, then waits on the real one."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _error(message: str) -> bytes:
    return json.dumps({"error": " ".join(message.split())}).encode()


async def _reply(send, status: int, body: bytes, ctype: bytes = b"application/json", extra=()) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

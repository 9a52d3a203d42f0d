"""A TensorFlow Serving REST surface over the same served models (TF Serving's ``api_rest.md``).

Routes (on the same port as the v2 API; TF Serving's own default is 8501):

- ``GET  /v1/models/NAME[/versions/N]``: model status (``GetModelStatusResponse`` as JSON).
- ``GET  /v1/models/NAME[/versions/N]/metadata``: ``GetModelMetadataResponse`` as JSON, with the
  one ``serving_default`` signature (``DT_FLOAT``, dims with ``"size": "-1"`` for any).
- ``POST /v1/models/NAME[/versions/N]:predict``: ``{"signature_name"?, "instances": ...}`` (row
  format: a list of per-row values, or of objects keyed by input name) answered with
  ``{"predictions": ...}`` (per-row values; objects keyed by output name when there are
  several outputs), or ``{"inputs": ...}`` (columnar: one tensor, or an object of tensors)
  answered with ``{"outputs": ...}``. ``NaN``/``Infinity`` tokens are accepted and written, as
  the document allows. JSON numbers are taken as the input's dtype (JSON has no float32).
- ``:classify`` / ``:regress`` and ``/labels/...``: 400/404 (edgekit models have only a predict
  signature and no version labels).

Errors are ``{"error": "<one line>"}``: 400 bad body, 404 unknown model or version (TF Serving's
``Servable not found for request: Latest(NAME)`` / ``Specific(NAME, N)``), 413 batch over the limit.
Each predict goes through MLServer's data plane: the same guard, adaptive batcher and runtime
as the v2 API.
"""

from __future__ import annotations

import json
import re

import numpy as np
from mlserver.errors import MLServerError, ModelNotFound
from mlserver.types import InferenceRequest, RequestInput
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edgekit.serve.plan import NUMPY_DTYPES

SIGNATURE = "serving_default"
_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<tail>:predict|:classify|:regress|/metadata)?$")
_TF_DTYPES = {"FP32": "DT_FLOAT", "FP64": "DT_DOUBLE", "FP16": "DT_HALF", "INT8": "DT_INT8", "INT16": "DT_INT16",
              "INT32": "DT_INT32", "INT64": "DT_INT64", "UINT8": "DT_UINT8", "UINT16": "DT_UINT16",
              "UINT32": "DT_UINT32", "UINT64": "DT_UINT64", "BOOL": "DT_BOOL"}


class _Fail(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _json(status: int, data: object) -> Response:
    return Response(json.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": " ".join(str(message).split())})


def _servable(name: str, version: str | None) -> str:
    return f"Servable not found for request: {f'Specific({name}, {version})' if version else f'Latest({name})'}"


def _tensor(value: object, name: str, datatype: str) -> np.ndarray:
    """A JSON value as an array of the input's dtype; only numbers (and booleans for BOOL) are taken."""
    try:
        arr = np.asarray(value)
    except ValueError as exc:
        raise _Fail(400, f"input {name!r} is not a rectangular tensor; got: {str(exc)[:120]}") from None
    if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "b") != (datatype == "BOOL"):
        raise _Fail(400, f"input {name!r} holds values of the wrong type; got: {arr.dtype.name} "
                         f"{str(value)[:60]}; expected: {_TF_DTYPES.get(datatype, datatype)} numbers")
    return arr.astype(NUMPY_DTYPES[datatype])


def _parse(body: bytes, inputs: list) -> tuple[dict[str, np.ndarray], bool]:
    """Decode a predict body into arrays keyed by input name; True for the row ("instances") format."""
    try:
        req = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Fail(400, f"request body is not valid JSON; got: {exc}") from None
    if not isinstance(req, dict):
        raise _Fail(400, f"request body must be a JSON object; got: {type(req).__name__}")
    sig = req.get("signature_name")
    if sig not in (None, "", SIGNATURE):
        raise _Fail(400, f'Serving signature name: "{sig}" not found in signature def; expected: {SIGNATURE}')
    unknown = sorted(set(req) - {"signature_name", "instances", "inputs"})
    if unknown or ("instances" in req) == ("inputs" in req):
        raise _Fail(400, "request must have either 'instances' (row format) or 'inputs' (columnar format), "
                         f"not both or neither; got keys: {sorted(req)}")
    names = [t.name for t in inputs]
    types = {t.name: t.datatype for t in inputs}
    if "instances" in req:
        rows = req["instances"]
        if not isinstance(rows, list) or not rows:
            raise _Fail(400, "'instances' must be a non-empty list of rows")
        if all(isinstance(r, dict) for r in rows):
            keys = [sorted(r) for r in rows]
            if any(k != sorted(names) for k in keys):
                bad = next(k for k in keys if k != sorted(names))
                raise _Fail(400, f"instance keys do not match the model's inputs; got: {bad}; expected: {names}")
            return {n: _tensor([r[n] for r in rows], n, types[n]) for n in names}, True
        if any(isinstance(r, dict) for r in rows):
            raise _Fail(400, "'instances' mixes objects and plain values")
        if len(names) != 1:
            raise _Fail(400, f"the model has {len(names)} inputs: each instance must be an object keyed by {names}")
        return {names[0]: _tensor(rows, names[0], types[names[0]])}, True
    cols = req["inputs"]
    if isinstance(cols, dict):
        if sorted(cols) != sorted(names):
            raise _Fail(400, f"'inputs' keys do not match the model's inputs; got: {sorted(cols)}; expected: {names}")
        return {n: _tensor(cols[n], n, types[n]) for n in names}, False
    if len(names) != 1:
        raise _Fail(400, f"the model has {len(names)} inputs: 'inputs' must be an object keyed by {names}")
    return {names[0]: _tensor(cols, names[0], types[names[0]])}, False


def _dims(shape: list[int]) -> dict:
    return {"dim": [{"size": str(d), "name": ""} for d in shape], "unknown_rank": False}


def _signature(meta) -> dict:
    def side(tensors):
        return {t.name: {"dtype": _TF_DTYPES.get(t.datatype, "DT_INVALID"), "tensor_shape": _dims(list(t.shape)),
                         "name": t.name} for t in tensors}

    return {"inputs": side(meta.inputs), "outputs": side(meta.outputs), "method_name": "tensorflow/serving/predict",
            "defaults": {}}


class TFServingREST:
    """The ``/v1/models/...`` routes; ``routes()`` goes into MLServer's app.

    Args:
        data_plane: MLServer's data plane.
        registry: MLServer's model registry (for the status of every version).
    """

    def __init__(self, data_plane, registry):
        self.data_plane = data_plane
        self.registry = registry

    def routes(self) -> list[Route]:
        return [Route("/v1/models/{rest:path}", self.handle, methods=["GET", "POST"])]

    async def handle(self, request: Request) -> Response:
        m = _PATH.match(request.path_params["rest"])
        if m is None:
            return _error(404, f"Malformed request: {request.method} {request.url.path}; expected: "
                               "/v1/models/NAME[/versions/N][:predict|/metadata]")
        name, version, tail = m["name"], m["version"], m["tail"] or ""
        if m["label"] is not None:
            return _error(404, f"version label {m['label']!r} is not defined for {name}; expected: /versions/N")
        want = "POST" if tail.startswith(":") else "GET"
        if request.method != want:
            return _error(405, f"{request.method} is not allowed on {request.url.path}; expected: {want}")
        try:
            if tail == "":
                return await self._status(name, version)
            meta = await self.data_plane.model_metadata(name, version)
            if tail == "/metadata":
                return _json(200, {"model_spec": {"name": name, "signature_name": "", "version": meta.versions[0]
                                                  if meta.versions else (version or "")},
                                   "metadata": {"signature_def": {"signature_def": {SIGNATURE: _signature(meta)}}}})
            if tail != ":predict":
                return _error(400, f"{name} has no {tail[1:]} signature: edgekit models have only "
                                   f"{SIGNATURE} (tensorflow/serving/predict); expected: :predict")
            return await self._predict(name, version, meta, await request.body())
        except ModelNotFound:
            return _error(404, _servable(name, version))
        except _Fail as exc:
            return _error(exc.status, str(exc))
        except MLServerError as exc:
            return _error(exc.status_code, str(exc))

    async def _status(self, name: str, version: str | None) -> Response:
        models = await self.registry.get_models(name)
        if version is not None:
            models = [m for m in models if m.version == version]
        if not models:
            return _error(404, _servable(name, version) if version else f"Could not find any versions of model {name}")
        return _json(200, {"model_version_status": [
            {"version": m.version or "", "state": "AVAILABLE" if m.ready else "LOADING",
             "status": {"error_code": "OK", "error_message": ""}} for m in models]})

    async def _predict(self, name: str, version: str | None, meta, body: bytes) -> Response:
        arrays, rows = _parse(body, meta.inputs)
        types = {t.name: t.datatype for t in meta.inputs}
        payload = InferenceRequest(inputs=[
            RequestInput(name=n, shape=list(a.shape), datatype=types[n], data=a.ravel().tolist())
            for n, a in arrays.items()])
        result = await self.data_plane.infer(payload, name, version)
        outs = {}
        for o in result.outputs:
            data = getattr(o.data, "root", o.data)
            outs[o.name] = np.asarray(data, dtype=NUMPY_DTYPES.get(o.datatype, "float64")).reshape(o.shape)
        if rows:
            if len(outs) == 1:
                return _json(200, {"predictions": next(iter(outs.values())).tolist()})
            n = next(iter(outs.values())).shape[0]
            return _json(200, {"predictions": [{k: v[i].tolist() for k, v in outs.items()} for i in range(n)]})
        if len(outs) == 1:
            return _json(200, {"outputs": next(iter(outs.values())).tolist()})
        return _json(200, {"outputs": {k: v.tolist() for k, v in outs.items()}})

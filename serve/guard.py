"""Every request is checked against the served model's interface *before* it joins a batch.

MLServer's adaptive batcher merges concurrent requests into one call; one malformed request in
a merged batch would fail all the others. :func:`install_guard` (an ``on_model_load`` hook,
run after MLServer's ``load_batching``) wraps the model's ``predict`` so that names, datatypes,
shapes, the element count and the batch limit are checked per request first: a bad request
gets its own 4xx (:class:`BadRequest`, one line: what, got, expected) and nobody else's.

The same hook serves the REST, gRPC and TF Serving surfaces, since all three go through
MLServer's data plane.
"""

from __future__ import annotations

from functools import wraps
from math import prod
from typing import Any

from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest

#: HTTP status of a batch over the limit (413 Content Too Large; gRPC RESOURCE_EXHAUSTED).
TOO_LARGE = 413
DEFAULT_MAX_BATCH_ROWS = 4096


class BadRequest(MLServerError):
    """A request the model cannot take (HTTP 400 unless told; one line: what, got, expected)."""

    def __init__(self, what: str, got: object = None, expected: object = None, status: int = 400):
        parts = [what] + [f"{k}: {v}" for k, v in (("got", got), ("expected", expected)) if v is not None]
        super().__init__(" ".join("; ".join(parts).split()), status)


def _itemsize(datatype: str) -> int:
    return {"BOOL": 1, "INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "FP16": 2, "INT32": 4, "UINT32": 4,
            "FP32": 4, "INT64": 8, "UINT64": 8, "FP64": 8}.get(datatype, 0)


def _count(data: Any, datatype: str) -> int | None:
    """Number of elements in a request's ``data`` (None: not a flat/nested list of scalars or raw bytes)."""
    data = getattr(data, "root", data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        size = _itemsize(datatype)
        return len(data) // size if size and len(data) % size == 0 else None
    if not isinstance(data, list):
        return 1 if isinstance(data, (int, float, bool)) else None
    n, stack = 0, [data]
    while stack:
        item = stack.pop()
        for x in item:
            if isinstance(x, list):
                stack.append(x)
            elif isinstance(x, (int, float, bool)) and not isinstance(x, str):
                n += 1
            else:
                return None
    return n


def check_request(req: InferenceRequest, name: str, inputs: list, outputs: list, max_rows: int) -> None:
    """Raise :class:`BadRequest` unless ``req`` fits the model's interface.

    Args:
        req: the request (REST, gRPC or translated from TF Serving).
        name: the model's served name (for messages).
        inputs, outputs: the model's ``MetadataTensor`` lists (name, datatype, shape; -1 = any).
        max_rows: the largest batch (axis 0) one request may carry.
    """
    want = {t.name: t for t in inputs}
    got_names = [i.name for i in req.inputs]
    missing = [n for n in want if n not in got_names]
    unexpected = [n for n in got_names if n not in want]
    if missing or unexpected or len(set(got_names)) != len(got_names):
        raise BadRequest(f"input names do not match model {name!r} (missing {missing}, unexpected {unexpected})",
                         got=got_names, expected=list(want))
    batch = None
    for inp in req.inputs:
        meta = want[inp.name]
        if inp.datatype != meta.datatype:
            raise BadRequest(f"input {inp.name!r} has the wrong datatype (nothing is cast)", got=inp.datatype,
                             expected=meta.datatype)
        shape = list(inp.shape)
        spec = ", ".join("-1" if d < 0 else str(d) for d in meta.shape)
        if len(shape) != len(meta.shape) or any(d >= 0 and s != d for s, d in zip(shape, meta.shape)) \
                or any(s < 0 for s in shape):
            raise BadRequest(f"input {inp.name!r} has the wrong shape", got=shape, expected=f"[{spec}]")
        rows = shape[0] if shape else 1
        if rows < 1:
            raise BadRequest(f"input {inp.name!r} is an empty batch", got=shape, expected="at least one row")
        if rows > max_rows:
            raise BadRequest(f"input {inp.name!r} batch is over this server's limit", got=f"{rows} rows",
                             expected=f"at most {max_rows} rows per request (edgekit serve --max-batch-rows)",
                             status=TOO_LARGE)
        if batch is not None and rows != batch:
            raise BadRequest("inputs have different batch sizes", got=f"{inp.name}: {rows}",
                             expected=f"{batch} rows like the other inputs")
        batch = rows
        n = _count(inp.data, inp.datatype)
        if n != prod(shape):
            raise BadRequest(f"input {inp.name!r} data does not fill its shape",
                             got="non-numeric data" if n is None else f"{n} values",
                             expected=f"{prod(shape)} {meta.datatype} values for shape {shape}")
    if req.outputs:
        known = [t.name for t in outputs]
        bad = [o.name for o in req.outputs if o.name not in known]
        if bad:
            raise BadRequest(f"unknown output requested from model {name!r}", got=bad, expected=known)


async def install_guard(model):
    """MLServer ``on_model_load`` hook: wrap ``model.predict`` with :func:`check_request`."""
    settings = model.settings
    extra = (settings.parameters.extra if settings.parameters else None) or {}
    max_rows = int(extra.get("max_batch_rows", DEFAULT_MAX_BATCH_ROWS))
    inner = model.predict

    @wraps(inner)
    async def predict(payload: InferenceRequest):
        check_request(payload, model.name, settings.inputs, settings.outputs, max_rows)
        return await inner(payload)

    model.predict = predict
    return model

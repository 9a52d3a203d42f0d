"""MLServer with edgekit's runtimes, the request guard, the binary tensor extension and TF Serving's REST API.

:func:`model_settings` turns a :class:`~edgekit.serve.plan.ServedModel` into MLServer's
``ModelSettings`` (metadata from the manifest, adaptive batching on). :class:`EdgekitServer`
is ``mlserver.MLServer`` plus:

- the guard (:func:`edgekit.serve.guard.install_guard`) as the last ``on_model_load`` hook,
  after MLServer's own ``load_batching``: each request is checked before it joins a batch;
- :class:`edgekit.serve.binary.BinaryTensorMiddleware` in front of the REST app and the
  ``/v1/models/...`` routes of :class:`edgekit.serve.tfserving.TFServingREST`;
- errors as ``{"error": "<one line>"}`` with a 4xx for every bad request (FastAPI's 422 for a
  malformed body becomes a 400), and 413 mapped to gRPC ``RESOURCE_EXHAUSTED``;
- :meth:`EdgekitServer.run`: like ``MLServer.start`` but a model that fails to load stops the
  server *and raises* (MLServer only logs it).

These hook into MLServer 1.7.1's internals (``_create_model_registry``, ``_rest_server._app``,
``_data_plane``), which is why ``edgekit[serve]`` pins ``mlserver==1.7.1``; the tests exercise
each of them through real clients.
"""

from __future__ import annotations

import asyncio
import json
import logging

import grpc
from fastapi.exceptions import RequestValidationError
from mlserver import MLServer
from mlserver.grpc import utils as grpc_utils
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import MetadataTensor
from starlette.requests import Request
from starlette.responses import Response

from edgekit.serve.binary import DEFAULT_MAX_BODY, BinaryTensorMiddleware
from edgekit.serve.guard import DEFAULT_MAX_BATCH_ROWS, TOO_LARGE, install_guard
from edgekit.serve.plan import OIP_DATATYPES, ServedModel
from edgekit.serve.tfserving import TFServingREST

#: adaptive batching defaults: up to 32 requests merged, waiting at most 1 ms for company.
DEFAULT_BATCH_REQUESTS = 32
DEFAULT_BATCH_TIME_MS = 1.0

grpc_utils.STATUS_CODE_MAPPING.setdefault(TOO_LARGE, grpc.StatusCode.RESOURCE_EXHAUSTED)


def _tensor(t) -> MetadataTensor:
    return MetadataTensor(name=t.name, datatype=OIP_DATATYPES[t.dtype], shape=[-1 if d is None else d for d in t.shape])


def model_settings(m: ServedModel, *, batch_requests: int = DEFAULT_BATCH_REQUESTS,
                   batch_time_ms: float = DEFAULT_BATCH_TIME_MS, max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
                   num_threads: int | None = None) -> ModelSettings:
    """MLServer settings of one served model.

    Args:
        m: the model.
        batch_requests: most requests the adaptive batcher merges into one call (default 32; 1 = off).
        batch_time_ms: longest a request waits for others to batch with (default 1.0 ms; 0 = off).
        max_batch_rows: largest batch one request may carry (default 4096).
        num_threads: runtime threads per model (default None: the runtime's default).
    """
    from edgekit.serve.runtime import EdgekitRuntime

    extra = {**m.to_extra(), "max_batch_rows": max_batch_rows, "num_threads": num_threads}
    return ModelSettings(
        name=m.name, implementation=EdgekitRuntime, platform=f"edgekit-{m.format}", versions=[m.version],
        inputs=[_tensor(t) for t in m.inputs], outputs=[_tensor(t) for t in m.outputs],
        max_batch_size=batch_requests, max_batch_time=batch_time_ms / 1000.0,
        parameters=ModelParameters(uri=str(m.path), version=m.version, extra=extra))


def server_settings(host: str = "127.0.0.1", port: int = 8080, grpc_port: int = 8081, workers: int = 0,
                    metrics_port: int | None = None, debug: bool = False) -> Settings:
    """MLServer settings.

    Args:
        host: interface for both servers (default 127.0.0.1: this machine only).
        port: REST port (v2 and TF Serving routes; default 8080).
        grpc_port: gRPC port (default 8081).
        workers: MLServer parallel inference processes (default 0: inference in the server
            process, the fastest for small models; N > 0 starts N worker processes).
        metrics_port: serve Prometheus metrics on this port (default None: no metrics server).
        debug: MLServer's debug mode with access logs (default False).
    """
    return Settings(host=host, http_port=port, grpc_port=grpc_port, parallel_workers=workers, debug=debug,
                    metrics_endpoint="/metrics" if metrics_port else None, metrics_port=metrics_port or 8082,
                    load_models_at_startup=False, server_name="edgekit-mlserver", logging_settings=log_config(debug))


def log_config(verbose: bool = False) -> dict:
    """Logging for MLServer and uvicorn: warnings only on stderr unless ``verbose`` (INFO).

    MLServer's warning that adaptive batching does not cover streaming inference is dropped:
    edgekit serves no streaming endpoint of its own, and it would be printed once per model.
    """
    level = "INFO" if verbose else "WARNING"
    quiet = {"level": level, "handlers": ["stderr"], "propagate": False}
    return {"version": 1, "disable_existing_loggers": False,
            "filters": {"streaming": {"()": _NoStreamingNote}},
            "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                    "formatter": "plain", "filters": ["streaming"]}},
            "loggers": {name: dict(quiet) for name in ("mlserver", "uvicorn", "uvicorn.error", "uvicorn.access")}}


class _NoStreamingNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "not supported for inference streaming" not in record.getMessage()


def _one_line(message: str) -> bytes:
    return json.dumps({"error": " ".join(str(message).split())}).encode()


async def _bad_body(request: Request, exc: RequestValidationError) -> Response:
    errs = exc.errors()
    first = errs[0] if errs else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
    what = "request body is not valid JSON" if first.get("type") == "json_invalid" else \
        "request body is not a v2 inference request"
    got = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return Response(_one_line(f"{what}; got: {got}"), status_code=400, media_type="application/json")


class EdgekitServer(MLServer):
    """``mlserver.MLServer`` with edgekit's guard, binary extension and TF Serving REST routes.

    Args:
        settings: MLServer settings (:func:`server_settings`).
        max_body: largest request body the binary-extension path reads, in bytes (default 256 MiB).
    """

    def __init__(self, settings: Settings, max_body: int = DEFAULT_MAX_BODY):
        self._max_body = max_body
        super().__init__(settings)

    def _create_model_registry(self):
        registry = super()._create_model_registry()
        registry._on_model_load = [*registry._on_model_load, install_guard]
        return registry

    def _create_servers(self):
        super()._create_servers()
        app = self._rest_server._app
        app.exception_handlers[RequestValidationError] = _bad_body
        app.router.routes.extend(TFServingREST(self._data_plane, self._model_registry).routes())
        app.add_middleware(BinaryTensorMiddleware, data_plane=self._data_plane, max_body=self._max_body)

    async def run(self, models: list[ModelSettings]) -> None:
        """Start both servers, load every model, serve until stopped (SIGINT/SIGTERM or :meth:`stop`).

        Raises:
            Exception: whatever a model's load raised (the servers are stopped first).
        """
        servers = asyncio.gather(self._rest_server.start(), self._grpc_server.start())
        try:
            await asyncio.gather(*[self._model_registry.load(s) for s in models])
        except BaseException:
            await self.stop()
            try:
                await servers
            except Exception:  # noqa: BLE001 - the load failure is the error to report
                pass
            raise
        await servers

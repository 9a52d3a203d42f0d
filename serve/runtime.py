"""The MLServer runtime: one edgekit runtime adapter (LiteRT or ONNX Runtime) per served model.

MLServer constructs it from :class:`mlserver.settings.ModelSettings` (in each parallel worker
when ``parallel_workers`` > 0) and calls :meth:`EdgekitRuntime.load`, which checks the file's
sha256 against the manifest's again, opens it with
:func:`edgekit.runtime.registry.open_model` and refuses a file whose interface differs from the
manifest's. :meth:`EdgekitRuntime.predict` decodes the Open Inference Protocol tensors to numpy,
calls the adapter's ``predict`` (the same call ``edgekit verify`` judges) and encodes the
outputs. Requests were already checked one by one before batching (:mod:`edgekit.serve.guard`).

``parameters.extra`` of the model settings carries :meth:`edgekit.serve.plan.ServedModel.to_extra`
plus ``num_threads`` (default None: the runtime's default) and ``max_batch_rows``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse

from edgekit.core.errors import EdgekitError, InputError, IntegrityError
from edgekit.core.fsutil import sha256_tree
from edgekit.runtime.base import TensorInfo
from edgekit.serve.guard import BadRequest
from edgekit.serve.plan import NUMPY_DTYPES


def _thread_option(fmt: str, threads: int | None) -> dict:
    if threads is None:
        return {}
    return {"num_threads": threads} if fmt == "tflite" else {"intra_op_num_threads": threads}


class EdgekitRuntime(MLModel):
    """An MLServer model backed by an edgekit :class:`~edgekit.runtime.base.Runner`."""

    async def load(self) -> bool:
        from edgekit.runtime.registry import open_model

        extra = dict(self.settings.parameters.extra or {}) if self.settings.parameters else {}
        path = Path(extra["path"])
        if not path.exists():
            raise InputError("served file is gone", got=str(path), expected="re-run edgekit export")
        digest = sha256_tree(path)
        if digest != extra["sha256"]:
            raise IntegrityError(f"checksum mismatch for {path}: corrupted or tampered with",
                                 got=digest[:16] + "...", expected=extra["sha256"][:16] + "...")
        self._runner = open_model(path, extra["format"], **_thread_option(extra["format"], extra.get("num_threads")))
        want_in = [TensorInfo.from_dict(t) for t in extra["inputs"]]
        want_out = [TensorInfo.from_dict(t) for t in extra["outputs"]]
        if (self._runner.inputs, self._runner.outputs) != (want_in, want_out):
            have = [t.describe() for t in self._runner.inputs + self._runner.outputs]
            self._runner.close()
            raise InputError(f"{path.name} does not have the interface its manifest lists", got=have,
                             expected=[t.describe() for t in want_in + want_out])
        self._out_names = [t.name for t in want_out]
        self._dtypes = {t.name: np.dtype(t.dtype) for t in want_in}
        self.ready = True
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for inp in payload.inputs:
            try:
                arr = NumpyCodec.decode_input(inp)
            except (ValueError, TypeError) as exc:
                raise BadRequest(f"input {inp.name!r} cannot be decoded", got=str(exc),
                                 expected=f"{inp.datatype} data of shape {list(inp.shape)}") from exc
            want = self._dtypes.get(inp.name)
            if want is not None and arr.dtype != want and NUMPY_DTYPES.get(inp.datatype) == want.name:
                arr = arr.astype(want)  # JSON numbers arrive as Python floats: same datatype, exact cast
            feeds[inp.name] = arr
        try:
            result = self._runner.predict(feeds)
        except InputError as exc:
            raise BadRequest(str(exc)) from exc
        except EdgekitError as exc:
            raise MLServerError(str(exc), 500) from exc
        names = [o.name for o in payload.outputs] if payload.outputs else self._out_names
        outputs = [NumpyCodec.encode_output(name, np.ascontiguousarray(result[name])) for name in names]
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)

    async def unload(self) -> bool:
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.close()
        return True

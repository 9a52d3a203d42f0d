"""Serve checks that need mlserver imported in-process; ``test_start`` runs each in a fresh interpreter."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np


def file_swapped_after_plan(example: str) -> None:
    from edgekit.core.errors import IntegrityError
    from edgekit.serve.plan import plan
    from edgekit.serve.runtime import EdgekitRuntime
    from edgekit.serve.server import model_settings

    (m,) = plan([Path(example)])
    m.path.write_bytes(m.path.read_bytes() + b"\0")
    runtime = EdgekitRuntime(model_settings(m))
    try:
        asyncio.run(runtime.load())
    except IntegrityError as exc:
        assert "checksum mismatch" in str(exc), exc
    else:
        raise AssertionError("a file changed after the start check was loaded")


def binary_codec_round_trip() -> None:
    from edgekit.serve.binary import decode, encode

    x = np.array([[1.5, np.nan], [-np.inf, 2.0]], np.float32)
    head = json.dumps({"inputs": [{"name": "features", "shape": [2, 2], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "output_0", "parameters": {"binary_data": True}}]}).encode()
    req, wanted = decode(head + x.tobytes(), len(head))
    got = np.asarray(req["inputs"][0]["data"], np.float32).reshape(2, 2)
    np.testing.assert_array_equal(got, x)  # NaN and Inf travel in binary mode
    assert wanted == {"output_0": True, "": False}, wanted
    body, n = encode({"outputs": [{"name": "output_0", "datatype": "FP32", "shape": [2, 2],
                                   "data": x.ravel().tolist()}]}, wanted)
    meta = json.loads(body[:n])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 16 and "data" not in meta["outputs"][0]
    np.testing.assert_array_equal(np.frombuffer(body[n:], "<f4").reshape(2, 2), x)
    body, n = encode({"outputs": [{"name": "output_0", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
                     {"": False})
    assert n is None and json.loads(body)["outputs"][0]["data"] == [1.0]

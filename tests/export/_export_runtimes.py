"""Run an exported artifact in its real runtime and read back its embedded metadata.

Deliberately independent of ``runtime/`` (its adapters are tested on their own), except
for Core ML values: Core ML cannot execute on Linux, so the numpy reference evaluator of
``edgekit.runtime.coreml`` runs the ML Program.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from edgekit.runtime.jsdeps import modules_root

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = modules_root()
NODE = shutil.which("node")
HAVE_NODE = NODE is not None and (NODE_MODULES / "@tensorflow" / "tfjs").is_dir()


def run_tflite(path: Path, art: dict, feeds: dict) -> tuple[dict, dict | None]:
    """Run with ai_edge_litert's Interpreter (signature runner); quantize/dequantize int8 I/O
    with the manifest's scale and zero point. Returns (outputs, embedded metadata)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.export.tflite import read_metadata

    it = Interpreter(model_path=str(path))
    run = it.get_signature_runner(art["signature"])
    q = art.get("quantization") or {}
    qin, qout = q.get("inputs", {}), q.get("outputs", {})
    details = run.get_input_details()
    args = {}
    for info in art["inputs"]:
        n = info["name"]
        x = feeds[n]
        if n in qin:
            p = qin[n]
            x = np.clip(np.round(x / p["scale"] + p["zero_point"]), -128, 127).astype(np.int8)
        assert np.dtype(details[n]["dtype"]).name == info["dtype"]
        args[n] = x
    raw = run(**args)
    out = {}
    for n, y in raw.items():
        if n in qout:
            y = (y.astype(np.float32) - qout[n]["zero_point"]) * qout[n]["scale"]
        out[n] = y
    return out, read_metadata(path)


def run_onnx(path: Path, art: dict, feeds: dict) -> tuple[dict, dict | None]:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == [i["name"] for i in art["inputs"]] or \
        sorted(i.name for i in s.get_inputs()) == sorted(i["name"] for i in art["inputs"])
    names = [o.name for o in s.get_outputs()]
    values = s.run(names, {k: v for k, v in feeds.items()})
    return dict(zip(names, values, strict=True)), dict(s.get_modelmeta().custom_metadata_map)


def coreml_spec(path: Path):
    import coremltools as ct

    return ct.models.MLModel(str(path), skip_model_load=True)


def run_coreml(path: Path, art: dict, feeds: dict) -> tuple[dict | None, dict | None]:
    """Values from edgekit.runtime.coreml's numpy reference evaluator (Core ML cannot run on Linux);
    outputs are None when that evaluator lacks one of the program's ops."""
    from edgekit.core.errors import RuntimeFailure
    from edgekit.runtime.coreml import CoreMLRunner

    meta = dict(coreml_spec(path).user_defined_metadata)
    try:
        with CoreMLRunner(path, evaluator="reference") as r:
            return r.predict(feeds), meta
    except RuntimeFailure as exc:
        if "does not implement the operation" in str(exc):
            return None, meta  # caller checks the metadata, then skips the value check naming why
        raise


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def run_tfjs_many(jobs: list[tuple[Path, dict]]) -> list[tuple[dict, dict | None]]:
    """Run several TF.js graph models in ONE Node process (cpu backend)."""
    payload = [{"dir": str(d), "inputs": {k: {"shape": list(v.shape), "b64": _b64(v)} for k, v in f.items()}}
               for d, f in jobs]
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    proc = subprocess.run([NODE, str(Path(__file__).with_name("run_tfjs.cjs"))], input=json.dumps(payload),
                          capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"node failed ({proc.returncode}): {proc.stderr[-2000:]}")
    results = []
    for r in json.loads(proc.stdout):
        outs = {n: np.frombuffer(base64.b64decode(o["b64"]), "<f4").reshape(o["shape"])
                for n, o in r["outputs"].items()}
        results.append((outs, (r.get("metadata") or {}).get("edgekit"), r["inputs"]))
    return results


RUNNERS = {"tflite": run_tflite, "onnx": run_onnx, "coreml": run_coreml}  # tfjs: batched, see conftest

#: gross-mismatch bound per precision: max |runtime - SavedModel| <= TOL * max(1, max |SavedModel|).
#: Parity proper is the runtime issue's job; these only catch a broken conversion. Observed on the
#: test models: fp32 <= 1.5e-7, fp16 <= 3.3e-4, int8_dynamic <= 1.3e-2, uint8 <= 1.9e-2, int8 <= 2.3e-2.
TOL = {"fp32": 1e-4, "fp16": 1e-2, "int8_dynamic": 0.08, "uint8": 0.1, "int8": 0.15}

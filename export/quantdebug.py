"""int8 that keeps accuracy: selective quantisation with some layers left in float.

``ExportOptions.keep_float`` (``--keep-float``) names Keras layers whose ops stay float32 in the
TFLite full-integer int8 file (the rest int8, with quantize/dequantize ops at the borders) and in
the ONNX int8_dynamic file (onnxruntime's ``quantize_dynamic(nodes_to_exclude=...)``,
:func:`select_onnx`), or is ``("auto",)``:

1. the model is calibrated once (TFLite's MLIR quantizer, ``_experimental_calibrate_only``: the
   calibration statistics stored in a float model), then quantised with
   ``mlir_quantize(..., denylisted_nodes=...)`` per candidate set: what TFLite's
   ``QuantizationDebugger`` does with ``QuantizationDebugOptions(denylisted_nodes=...)``;
2. each candidate runs in LiteRT on the golden rows (``reference.npz`` of the export, or the
   example's), and its output is judged as verify judges it (``tolerance.POLICY[("tflite",
   "int8")]``, the rows inside the int8 range, and the task metric's drop where the rows are
   labelled);
3. while it fails, ``edgekit explain``'s per-layer comparison with Keras
   (:func:`edgekit.parity.explain.compare_layers`) names the first divergent layer (else the layer
   with the largest relative error) and that layer joins the float set.

The manifest records the result under ``quantization.keep_float``: the layers kept, how many op
outputs that denylisted, the flatbuffer size of the plain int8 model (``plain_int8_bytes``), of
this one (``bytes``, both before edgekit's metadata entry) and the difference
(``size_cost_bytes``), for ``auto`` every step (layers kept, max abs error, rows compared,
passed or not, the layer blamed) and ``met_tolerance``; for TFLite also ``layer_errors``: the
per-layer quantisation error as TFLite's ``QuantizationDebugger`` reports it (each op on the same
inputs as its float twin; ``rmse/scale`` ~0.29 is rounding alone), worst first.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

AUTO = "auto"
#: at most this many layers are kept in float by ``auto`` before it gives up (the file is written,
#: verify then fails it with the figures).
MAX_AUTO_LAYERS = 12


def parse_keep_float(value) -> tuple[str, ...]:
    """``"auto"`` / ``"d1,d2"`` / a sequence -> a tuple of names (``("auto",)`` for auto); ``()`` for none.

    Raises:
        UsageError: ``auto`` mixed with layer names, or an empty name.
    """
    from edgekit.core.errors import UsageError

    if value is None or value == "" or value == ():
        return ()
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s).strip() for s in value]
    if any(not s for s in items):
        raise UsageError("--keep-float has an empty layer name", got=value, expected="auto or LAYER[,LAYER...]")
    if AUTO in items and len(items) > 1:
        raise UsageError("--keep-float auto cannot be combined with layer names", got=value,
                         expected="auto or LAYER[,LAYER...]")
    return tuple(dict.fromkeys(items))


def calibrated_model(conv) -> bytes:
    """The float model carrying calibration statistics (the converter set up for full-integer int8)."""
    conv.experimental_mlir_quantizer = True
    conv._experimental_calibrate_only = True
    return conv.convert()


def quantize(calibrated: bytes, conv, nodes: list[str]) -> bytes:
    """Full-integer int8 (int8 inputs and outputs) with the ops writing ``nodes`` left float."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(calibrated, disable_per_channel=conv._experimental_disable_per_channel,
                                 fully_quantize=True, input_data_type=tf.int8, output_data_type=tf.int8,
                                 denylisted_nodes=list(nodes) or None)


def op_outputs(model: bytes) -> list[str]:
    """Names of every op output tensor of a TFLite model, in execution order."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    details = {d["index"]: d["name"] for d in it.get_tensor_details()}
    return [details[int(i)] for op in it._get_ops_details() for i in op["outputs"] if int(i) in details]


def nodes_for(names: list[str], layers: list[str], model_name: str, all_layers: list[str]) -> list[str]:
    """The op outputs (of ``names``) that belong to any of ``layers`` (fused ops included)."""
    from edgekit.parity.explain_match import tensor_layers

    want, known = set(layers), set(all_layers)
    return [n for n in names if tensor_layers(n, "", model_name, known) & want]


def _judge_data(source, out_dir: Path, model) -> dict:
    """Golden inputs, Keras outputs and labels to judge candidates on: the export's reference.npz
    (staged before the variants), else the example's, else the calibration rows."""
    from edgekit.parity.keras_model import keras_outputs

    info = getattr(source, "example", None) or {}
    refinfo = info.get("reference") or {}
    for cand in (out_dir / "reference.npz", (source.example_dir / "reference.npz") if source.example_dir else None):
        if cand is not None and cand.is_file():
            with np.load(cand, allow_pickle=False) as z:
                if all(n in z.files for n in source.input_names):
                    feeds = {n: z[n] for n in source.input_names}
                    n_lab = int(refinfo.get("n_labeled", 0))
                    y = z[refinfo.get("target_key", "y_true")] if n_lab and refinfo.get("target_key", "y_true") \
                        in z.files else None
                    return {"feeds": feeds, "outputs": keras_outputs(model, feeds, list(source.output_names)),
                            "y_true": y, "n_labeled": n_lab if y is not None else 0, "task": source.task,
                            "origin": f"{len(next(iter(feeds.values())))} golden rows of {cand.name}"}
    return {}


def layer_quant_errors(calibrated: bytes, feeds: dict, model_name: str, all_layers: list[str],
                       limit: int = 10) -> list[dict]:
    """The per-layer quantisation error of the full-integer model, as TFLite's QuantizationDebugger
    reports it: every quantised op run on the *same* (dequantised) inputs as its float twin
    (NumericVerify ops), so each layer's own error, not the accumulated one. Returns the ``limit``
    worst (default 10) by ``rmse/scale`` (about 0.29 is rounding alone), with the Keras layer of each."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    from edgekit.parity.explain_match import tensor_layers

    debug = convert.mlir_quantize(calibrated, enable_numeric_verify=True, fully_quantize=False)
    from ai_edge_litert.interpreter import Interpreter

    order = [d["name"] for d in Interpreter(model_content=debug).get_input_details()]
    names = [next((n for n in feeds if d == n or d.startswith(f"serving_default_{n}:") or d == f"{n}:0"), None)
             for d in order]
    if None in names:
        names = list(feeds)
    rows = len(next(iter(feeds.values())))

    def gen():
        for i in range(rows):
            yield [np.asarray(feeds[n][i:i + 1]) for n in names]

    dbg = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug, debug_dataset=gen)
    dbg.run()
    scales = {}
    for d in dbg._quant_interpreter.get_tensor_details():
        scale = (d.get("quantization") or (0.0, 0))[0]
        scales[d["name"]] = float(scale)
    out = []
    known = set(all_layers)
    for key, stats in dbg.layer_statistics.items():
        tensor = key.removeprefix("NumericVerify/").rsplit(":", 1)[0]
        tensor = tensor[:-1] if tensor not in scales and tensor[:-1] in scales else tensor
        scale = scales.get(tensor, 0.0)
        rmse = float(np.sqrt(stats["mean_squared_error"]))
        layers = sorted(tensor_layers(tensor, "", model_name, known))
        out.append({"layer": ",".join(layers) or None, "tensor": tensor, "rmse/scale": rmse / scale if scale else None,
                    "max_abs_error": float(stats["max_abs_error"]), "mean_error": float(stats["mean_error"])})
    out.sort(key=lambda e: -(e["rmse/scale"] or 0.0))
    return out[:limit]


def _keras(source):
    from edgekit.parity.keras_model import load_keras

    if source.keras_path is None:
        raise ValueError("--keep-float needs the Keras model (a .keras source or an example with model.keras) "
                         "to name layers")
    model = load_keras(Path(source.keras_path))
    return model, [lay.name for lay in model.layers if type(lay).__name__ != "InputLayer"]


def _check_names(keep, all_layers) -> None:
    bad = [k for k in keep if k not in all_layers]
    if bad:
        raise ValueError(f"--keep-float names layers the model does not have: {', '.join(bad)} "
                         f"(its layers: {', '.join(all_layers)})")


def select_onnx(fp32, quantize_to, source, options, out_dir: Path) -> tuple[bytes, dict]:
    """ONNX int8_dynamic with ``options.keep_float`` honoured: onnxruntime's ``quantize_dynamic``
    with ``nodes_to_exclude`` = the nodes of the kept layers (they stay float MatMul/Conv).

    Args:
        fp32: the float ``onnx.ModelProto``.
        quantize_to: ``quantize_to(nodes_to_exclude, path)`` writes the quantised model to ``path``.
        source, options, out_dir: as for :func:`select`.
    """
    keep = parse_keep_float(options.keep_float)
    model, all_layers = _keras(source)
    names = [n.name for n in fp32.graph.node]

    def make(nodes: list[str]) -> bytes:
        with tempfile.TemporaryDirectory(prefix=".keep-float-q-", dir=out_dir) as tmp:
            path = Path(tmp) / "q.onnx"
            quantize_to(nodes, path)
            return path.read_bytes()

    plain = make([])
    record: dict = {"mode": "auto" if keep == (AUTO,) else "list", "plain_int8_bytes": len(plain),
                    "tool": "onnxruntime.quantization.quantize_dynamic(nodes_to_exclude=...)"}
    if keep != (AUTO,):
        _check_names(keep, all_layers)
        nodes = nodes_for(names, list(keep), model.name, all_layers)
        final = make(nodes)
        record.update(layers=list(keep), denylisted_ops=len(nodes))
    else:
        from edgekit.runtime.onnx import OnnxRunner

        final, auto = _auto(make, "onnx", "int8_dynamic", ".onnx", OnnxRunner, source, out_dir, model,
                            all_layers, names)
        record.update(auto)
    record.update(bytes=len(final), size_cost_bytes=len(final) - len(plain))
    return final, record


def select(conv, source, options, out_dir: Path) -> tuple[bytes, dict]:
    """The int8 flatbuffer with ``options.keep_float`` honoured, and the manifest record.

    Args:
        conv: a ``TFLiteConverter`` set up for full-integer int8 (representative dataset, int8 I/O).
        source: the :class:`~edgekit.export.source.SourceModel` (its ``keras_path`` is needed to
            name layers).
        options: the run's ExportOptions (``keep_float``, ``calibration``).
        out_dir: the staging export directory (its ``reference.npz`` holds the golden rows).

    Raises:
        ValueError: no Keras model, layer names the model does not have, or no golden rows for auto
            (the variant is then recorded as failed, with this message).
    """
    keep = parse_keep_float(options.keep_float)
    model, all_layers = _keras(source)
    calibrated = calibrated_model(conv)
    names = op_outputs(calibrated)
    plain = quantize(calibrated, conv, [])
    record: dict = {"mode": "auto" if keep == (AUTO,) else "list", "plain_int8_bytes": len(plain)}
    try:  # QuantizationDebugger's per-layer view, for the manifest; never fails the export
        data = _judge_data(source, out_dir, model)
        feeds = data.get("feeds") or options.calibration
        record["layer_errors"] = layer_quant_errors(calibrated, feeds, model.name, all_layers)
    except Exception as exc:  # noqa: BLE001 - a debugger failure must not lose the variant
        record["layer_errors_error"] = f"{type(exc).__name__}: {exc}"[:300]
    if keep != (AUTO,):
        _check_names(keep, all_layers)
        nodes = nodes_for(names, list(keep), model.name, all_layers)
        final = quantize(calibrated, conv, nodes)
        record.update(layers=list(keep), denylisted_ops=len(nodes))
    else:
        from edgekit.runtime.tflite import TFLiteRunner

        final, auto = _auto(lambda nodes: quantize(calibrated, conv, nodes), "tflite", "int8", ".tflite",
                            TFLiteRunner, source, out_dir, model, all_layers, names)
        record.update(auto)
    record.update(bytes=len(final), size_cost_bytes=len(final) - len(plain))  # flatbuffers before metadata
    return final, record


def _auto(make, fmt: str, precision: str, suffix: str, runner_cls, source, out_dir, model, all_layers,
          names) -> tuple[bytes, dict]:
    """Keep layers in float, one more per step, until the candidate ``make(nodes)`` passes."""
    from edgekit.parity.layer_outputs import layer_outputs
    from edgekit.parity.tolerance import tolerances_for

    data = _judge_data(source, out_dir, model)
    if not data:
        raise ValueError("--keep-float auto needs golden rows to judge on (reference.npz: a .keras source with "
                         "--inputs or synthesised inputs, or an example)")
    keras = layer_outputs(model, data["feeds"])
    tols = tolerances_for(fmt, precision, list(data["outputs"]))
    kept: list[str] = []
    steps = []
    best = b""
    with tempfile.TemporaryDirectory(prefix=".keep-float-", dir=out_dir) as tmp:
        for _ in range(min(MAX_AUTO_LAYERS, len(all_layers)) + 1):
            candidate = make(nodes_for(names, kept, model.name, all_layers))
            path = Path(tmp) / f"candidate_{len(kept)}{suffix}"
            path.write_bytes(candidate)
            passed, step, blame = _try(path, runner_cls, data, tols, keras, model.name, kept)
            steps.append(step)
            best = candidate
            if passed or blame is None:
                break
            kept.append(blame)
    return best, {"layers": kept, "denylisted_ops": len(nodes_for(names, kept, model.name, all_layers)),
                  "met_tolerance": bool(steps and steps[-1]["passed"]), "judged_on": data["origin"], "steps": steps}


def _try(path: Path, runner_cls, data: dict, tols, keras, model_name: str, kept: list[str]):
    """Run one candidate file; returns (passed, step record, layer to keep next or None)."""
    from types import SimpleNamespace

    from edgekit.parity.compare import compare_outputs
    from edgekit.parity.explain import compare_layers
    from edgekit.parity.metrics import task_metrics
    from edgekit.parity.targets import calibrated_rows

    feeds, want = data["feeds"], data["outputs"]
    with runner_cls(path) as runner:
        got = dict(runner.predict(feeds))
        inter = runner.intermediates(feeds)
        quant = getattr(runner, "quantization", {}) or {}
    rows = None
    if tols[""].calibrated_range_only:
        q = {"inputs": {n: p for n, p in quant.items() if n in feeds},
             "outputs": {n: p for n, p in quant.items() if n in want}}
        rows = calibrated_rows(SimpleNamespace(raw={"quantization": q}),
                               SimpleNamespace(reference=SimpleNamespace(inputs=feeds, outputs=want)))
    result = compare_outputs(got, want, tols, rows=rows)
    compared = int(rows.sum()) if rows is not None else len(next(iter(feeds.values())))
    step = {"kept": list(kept), "max_abs_err": result.max_abs_err, "rows_compared": compared,
            "passed": bool(result.passed) and compared >= 8}
    first = next(iter(want))
    if data.get("n_labeled") and data.get("task"):
        k = task_metrics(data["task"], data["y_true"], want[first], data["n_labeled"])
        f = task_metrics(data["task"], data["y_true"], got[first], data["n_labeled"])
        drop = k.value - f.value
        step["metric_drop"] = drop
        bound = tols[""].max_metric_drop
        if bound is not None and drop > bound + 1e-9:
            step["passed"] = False
    if step["passed"]:
        return True, step, None
    layers = compare_layers(keras, inter, model_name, tols[""], rows)
    free = [d for d in layers if d.max_abs_err is not None and d.layer not in kept]
    blame = next((d for d in free if d.status in ("over", "over?")), None) or \
        max(free, key=lambda d: d.max_rel_err or 0.0, default=None)
    step["blamed"] = None if blame is None else blame.layer
    return False, step, None if blame is None else blame.layer

"""Why full-integer int8 TFLite is not 2x faster than fp32 on this CPU, with data (issue 17).

Usage::

    .venv/bin/python benchmarks/bench_int8.py [--real /tmp/ek17/real] [--out /tmp/h17c/int8]
        [--sections ops models settings] [--seconds 2]

Every figure is a raw LiteRT call (``set_tensor``/``invoke``/``get_tensor``, batch 1, the int8 input
quantized beforehand), the fp32 and int8 files of one row timed in alternating blocks of 10 calls in
one process (p50), so load from elsewhere hits both alike. Sections:

- ``ops``: one-layer Keras models per op kind and size (the shapes of MobileNetV2 α0.35 96², and
  3x3 convolutions of a ResNet-style stack), converted here with ``TFLiteConverter`` (fp32; int8
  per-channel, the default; int8 per-tensor): µs, GOP/s and the int8 speed-up per layer;
- ``models``: the real models' edgekit exports (``--real``, from ``benchmarks/real_models.py``) and
  keras.applications ResNet50 at 96² (``weights=None``, built and converted here into ``--out``),
  at 1 and 2 threads;
- ``settings``: what could change int8's speed here: per-tensor instead of per-channel weights,
  ``experimental_default_delegate_latest_features``, and LiteRT's own kernels without XNNPACK
  (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``: ruy for int8 and fp32);
- ``ort``: ONNX Runtime's static int8 (``quantize_static`` on edgekit's fp32 ONNX file, 16
  calibration rows): QDQ and QOperator formats, u8 or s8 activations, per-channel or per-tensor
  weights, ``reduce_range``, against ORT fp32 (graph optimisation ``all``, 1 thread).

Conversions are cached in ``--out`` (delete it to rebuild). Prints Markdown tables; the load
average before and after goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from edgekit.bench.flops import count_tflite  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adapter import paired  # noqa: E402

#: (name, kind, input HxWxC, filters, kernel, stride): MobileNetV2 α0.35 96² blocks, a ResNet stack, and a
#: sweep of the 1x1 convolution's input channels (the GEMM's K: what int8's per-output requantization is
#: spread over).
OPS = [
    ("mnv2 expand 48² 8→48", "conv1x1", (48, 48, 8), 48, 1, 1),
    ("mnv2 dw 48² 48", "dw3x3", (48, 48, 48), None, 3, 1),
    ("mnv2 project 24² 48→8", "conv1x1", (24, 24, 48), 8, 1, 1),
    ("mnv2 expand 12² 16→96", "conv1x1", (12, 12, 16), 96, 1, 1),
    ("mnv2 dw 12² 96", "dw3x3", (12, 12, 96), None, 3, 1),
    ("mnv2 expand 6² 32→192", "conv1x1", (6, 6, 32), 192, 1, 1),
    ("mnv2 dw 6² 192", "dw3x3", (6, 6, 192), None, 3, 1),
    ("mnv2 last 3² 112→1280", "conv1x1", (3, 3, 112), 1280, 1, 1),
    ("effnet expand 32² 24→144", "conv1x1", (32, 32, 24), 144, 1, 1),
    ("effnet dw 32² 144", "dw3x3", (32, 32, 144), None, 3, 1),
    ("resnet 3x3 24² 64→64", "conv3x3", (24, 24, 64), 64, 3, 1),
    ("resnet 3x3 12² 128→128", "conv3x3", (12, 12, 128), 128, 3, 1),
    ("resnet 3x3 6² 256→256", "conv3x3", (6, 6, 256), 256, 3, 1),
    ("resnet 1x1 12² 256→1024", "conv1x1", (12, 12, 256), 1024, 1, 1),
] + [(f"sweep 1x1 24² {k}→64", "conv1x1", (24, 24, k), 64, 1, 1) for k in (8, 16, 32, 64, 128, 256, 512)]


def _convert(fn_or_dir, rows: np.ndarray, kind: str) -> bytes:
    """``kind``: fp32 | int8 (per-channel, the converter's default) | int8pt (per-tensor)."""
    import tensorflow as tf

    conv = (tf.lite.TFLiteConverter.from_saved_model(str(fn_or_dir)) if isinstance(fn_or_dir, Path)
            else tf.lite.TFLiteConverter.from_concrete_functions([fn_or_dir]))
    if kind != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([r[None]] for r in rows)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
        if kind == "int8pt":
            conv._experimental_disable_per_channel = True
    return conv.convert()


def _cached(path: Path, make) -> Path:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(make())
        tmp.replace(path)
    return path


def _raw(path: Path, threads: int, **kw):
    """A raw batch-1 call of ``path`` on seeded input (quantized for an int8 input)."""
    from edgekit.runtime.tflite import interpreter_class, quantize

    cls, _ = interpreter_class()
    it = cls(model_path=str(path), num_threads=threads, **kw)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    shape = [1, *[int(s) for s in d["shape"][1:]]]
    it.resize_tensor_input(d["index"], shape, strict=False)
    it.allocate_tensors()
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    if np.dtype(d["dtype"]).kind in "iu":
        x = quantize(x, d["quantization"][0], d["quantization"][1], d["dtype"])
    outs = [o["index"] for o in it.get_output_details()]

    def call():
        it.set_tensor(d["index"], x)
        it.invoke()
        return [it.get_tensor(i) for i in outs]

    return call


def _md(head, rows) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def ops_section(out: Path, seconds: float) -> str:
    import keras
    import tensorflow as tf

    rows = []
    for name, kind, shape, filters, k, stride in OPS:
        stem = out / "ops" / name.replace(" ", "_").replace("²", "").replace("→", "-")
        def make(q, kind=kind, shape=shape, filters=filters, k=k, stride=stride):
            keras.utils.set_random_seed(0)
            layer = (keras.layers.DepthwiseConv2D(k, stride, padding="same") if kind.startswith("dw")
                     else keras.layers.Conv2D(filters, k, stride, padding="same"))
            model = keras.Sequential([keras.Input(shape), layer])
            fn = tf.function(lambda t: model(t)).get_concrete_function(tf.TensorSpec([1, *shape], tf.float32))
            calib = np.random.default_rng(1).uniform(-1, 1, (8, *shape)).astype(np.float32)
            return _convert(fn, calib, q)

        files = {q: _cached(stem / f"{q}.tflite", lambda q=q, make=make: make(q)) for q in ("fp32", "int8", "int8pt")}
        flops = count_tflite(files["fp32"])["flops"]
        p50 = paired({q: _raw(f, 1) for q, f in files.items()}, seconds)
        us = {q: v * 1e6 for q, v in p50.items()}
        rows.append([name, f"{flops / 1e6:.1f}", f"{us['fp32']:.1f}", f"{us['int8']:.1f}", f"{us['int8pt']:.1f}",
                     f"{us['fp32'] / us['int8']:.2f}×", f"{flops / us['fp32'] / 1e3:.0f}",
                     f"{flops / us['int8'] / 1e3:.0f}"])
    return _md(("layer (batch 1, 1 thread)", "MFLOPs", "fp32 µs", "int8 µs", "int8 per-tensor µs",
                "int8 speed-up", "fp32 GFLOP/s", "int8 GOP/s"), rows)


def _resnet50(out: Path) -> dict[str, Path]:
    d = out / "resnet50_96"
    if all((d / f"{q}.tflite").is_file() for q in ("fp32", "int8", "int8pt")):
        return {q: d / f"{q}.tflite" for q in ("fp32", "int8", "int8pt")}
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(96, 96, 3), classes=10)
    sm = d / "saved_model"
    if not sm.is_dir():
        model.export(str(sm), verbose=False)
    calib = np.random.default_rng(1).uniform(0, 255, (16, 96, 96, 3)).astype(np.float32)
    return {q: _cached(d / f"{q}.tflite", lambda q=q: _convert(sm, calib, q)) for q in ("fp32", "int8", "int8pt")}


def _model_files(real: Path, out: Path) -> dict[str, dict[str, Path]]:
    files = {}
    for name in ("mobilenet_v2", "efficientnet_b0_128"):
        d = real / name / "exports" / "tflite"
        if (d / "model_int8.tflite").is_file():
            files[name] = {"fp32": d / "model_fp32.tflite", "int8": d / "model_int8.tflite"}
            with np.load(real / name / "calibration.npz", allow_pickle=False) as z:
                calib = z[z.files[0]][:16].astype(np.float32)
            files[name]["int8pt"] = _cached(out / name / "int8pt.tflite",
                                            lambda n=name, c=calib: _convert(real / n / "saved_model", c, "int8pt"))
    files["resnet50_96"] = _resnet50(out)
    return files


def models_section(real: Path, out: Path, seconds: float) -> str:
    rows = []
    for name, f in _model_files(real, out).items():
        flops = count_tflite(f["fp32"])["flops"]
        for t in (1, 2):
            p50 = paired({"fp32": _raw(f["fp32"], t), "int8": _raw(f["int8"], t)}, seconds)
            ms = {q: v * 1e3 for q, v in p50.items()}
            rows.append([name, t, f"{flops / 1e6:.0f}", f"{ms['fp32']:.3f}", f"{ms['int8']:.3f}",
                         f"{ms['fp32'] / ms['int8']:.2f}×", f"{flops / ms['fp32'] / 1e6:.0f}",
                         f"{flops / ms['int8'] / 1e6:.0f}"])
    return _md(("model", "threads", "MFLOPs", "fp32 ms", "int8 ms", "int8 speed-up", "fp32 GFLOP/s",
                "int8 GOP/s"), rows)


def settings_section(real: Path, out: Path, seconds: float) -> str:
    from ai_edge_litert.interpreter import OpResolverType

    no_xnn = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    latest = {"experimental_default_delegate_latest_features": True}
    rows = []
    for name, f in _model_files(real, out).items():
        calls = {"fp32": _raw(f["fp32"], 1), "int8": _raw(f["int8"], 1), "int8 per-tensor": _raw(f["int8pt"], 1),
                 "int8 latest features": _raw(f["int8"], 1, **latest),
                 "fp32 no XNNPACK": _raw(f["fp32"], 1, **no_xnn), "int8 no XNNPACK": _raw(f["int8"], 1, **no_xnn)}
        ms = {k: v * 1e3 for k, v in paired(calls, seconds).items()}
        rows.append([name] + [f"{ms[k]:.3f} ({ms['fp32'] / ms[k]:.2f}×)" for k in calls])
    return _md(("model (1 thread), ms (speed-up over XNNPACK fp32)", "fp32", "int8 per-channel", "int8 per-tensor",
                "int8 latest features", "fp32 no XNNPACK", "int8 no XNNPACK"), rows)


ORT_VARIANTS = {  # name: quantize_static keyword arguments (QuantFormat/QuantType names)
    "QDQ u8/s8 per-channel": {"quant_format": "QDQ", "activation_type": "QUInt8", "per_channel": True},
    "QDQ u8/s8 per-tensor": {"quant_format": "QDQ", "activation_type": "QUInt8", "per_channel": False},
    "QDQ s8/s8 per-channel": {"quant_format": "QDQ", "activation_type": "QInt8", "per_channel": True},
    "QOperator u8/s8 per-channel": {"quant_format": "QOperator", "activation_type": "QUInt8", "per_channel": True},
    "QDQ u8/s8 per-channel reduce_range": {"quant_format": "QDQ", "activation_type": "QUInt8", "per_channel": True,
                                           "reduce_range": True},
}


def _ort_call(path: Path, x: dict, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, x)


def _ort_quantized(fp32: Path, in_name: str, calib: np.ndarray, dest: Path, kw: dict) -> Path:
    """``quantize_static`` of ``fp32`` with ``kw`` (format/type names as strings), cached at ``dest``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(calib)

        def get_next(self):
            r = next(self.rows, None)
            return None if r is None else {in_name: r[None]}

    def make() -> bytes:
        tmp = dest.with_suffix(".tmp.onnx")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        args = {**kw, "quant_format": getattr(QuantFormat, kw["quant_format"]),
                "activation_type": getattr(QuantType, kw["activation_type"]), "weight_type": QuantType.QInt8}
        quantize_static(str(fp32), str(tmp), Reader(), **args)
        data = tmp.read_bytes()
        tmp.unlink()
        return data

    return _cached(dest, make)


def ort_section(real: Path, out: Path, seconds: float) -> str:
    """ONNX Runtime static int8 (``quantize_static``, the variants of ``ORT_VARIANTS``) vs its fp32, 1 thread."""
    import onnx

    rows = []
    for name in ("mobilenet_v2", "efficientnet_b0_128"):
        fp32 = real / name / "exports" / "onnx" / "model_fp32.onnx"
        if not fp32.is_file():
            continue
        in_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
        with np.load(real / name / "calibration.npz", allow_pickle=False) as z:
            calib = z[z.files[0]][:16].astype(np.float32)
        files = {v: _ort_quantized(fp32, in_name, calib, out / name / ("ort_" + v.replace(" ", "_").replace("/", "")
                                                                      + ".onnx"), kw)
                 for v, kw in ORT_VARIANTS.items()}
        x = {in_name: calib[:1]}
        calls = {"fp32": _ort_call(fp32, x), **{v: _ort_call(f, x) for v, f in files.items()}}
        ms = {k: v * 1e3 for k, v in paired(calls, seconds).items()}
        rows.append([name] + [f"{ms[k]:.3f} ({ms['fp32'] / ms[k]:.2f}×)" for k in calls])
    return _md(("model (ORT, 1 thread), ms (speed-up over ORT fp32)", "fp32", *ORT_VARIANTS), rows)

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=Path("/tmp/ek17/real"), help="benchmarks/real_models.py's OUT")
    ap.add_argument("--out", type=Path, default=Path("/tmp/h17c/int8"), help="cache of the files converted here")
    ap.add_argument("--sections", nargs="+", default=["ops", "models", "settings", "ort"],
                    choices=["ops", "models", "settings", "ort"])
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per row (default 2)")
    args = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    for s in args.sections:
        print(f"\n#### {s}\n")
        if s == "ops":
            print(ops_section(args.out, args.seconds))
        elif s == "models":
            print(models_section(args.real, args.out, args.seconds))
        elif s == "settings":
            print(settings_section(args.real, args.out, args.seconds))
        else:
            print(ort_section(args.real, args.out, args.seconds))
        sys.stdout.flush()
    print(f"load average after: {os.getloadavg()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""TFLite adapter: the LiteRT interpreter, as on a phone or a Raspberry Pi.

Interpreter, in order of preference: ``ai_edge_litert.interpreter.Interpreter`` (the
maintained LiteRT wheel), ``tflite_runtime.interpreter.Interpreter`` (stopped at 2.14),
then ``tf.lite.Interpreter`` (only if TensorFlow is installed; imported lazily).

Names are the model's signature names (``features`` -> ``output_0`` for an edgekit export)
when the file carries a signature whose tensors are the main graph's, else the raw tensor
names. Input tensors are resized (and tensors re-allocated) only when the batch changes.

Quantized (int8/uint8) inputs and outputs keep a float32 interface: ``inputs``/``outputs``
report ``float32``; float inputs are quantized with the tensor's scale and zero point
(``round(x / scale) + zero_point``, half away from zero, clipped to the integer range) and outputs dequantized
(``(q - zero_point) * scale``). The raw integer parameters are in ``runner.quantization``. The input
quantization runs in LiteRT's own reference QUANTIZE kernel (a one-op interpreter per input, checked
against the numpy formula at load), about 6x faster than numpy on an image; see :mod:`edgekit.runtime.tflite_quant`.
On a device::

    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path="model.tflite"); it.allocate_tensors()
    y = it.get_signature_runner("serving_default")(features=x)["output_0"]
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any

import numpy as np

from edgekit.core.errors import DependencyError, InputError, Unverifiable
from edgekit.runtime.base import Runner, TensorInfo, package_version
from edgekit.runtime.registry import register
from edgekit.runtime.tflite_quant import Quantizer, quantize, quantize_checked  # noqa: F401  (quantize: API)


def interpreter_class() -> tuple[Any, str]:
    """The best available Interpreter class and a description of it.

    Raises:
        DependencyError: neither ai-edge-litert nor tflite-runtime is importable. (TensorFlow's own
            ``tf.lite.Interpreter`` is not used: the device side never imports TensorFlow.)
    """
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {package_version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, f"tflite-runtime {package_version('tflite-runtime')}"
    except ImportError as exc:
        raise DependencyError("no TFLite interpreter is installed", got=str(exc),
                              expected="pip install ai-edge-litert (or make setup)") from exc


def flex_op_names(model: bytes) -> list[str]:
    """The TF ops a .tflite flatbuffer runs through the Flex delegate (custom codes ``Flex<Op>``), sorted.
    A buffer that is no valid flatbuffer gives ``[]``: the interpreter then says what is wrong with it."""
    import struct

    from ai_edge_litert import schema_py_generated as schema

    names = set()
    try:
        m = schema.Model.GetRootAs(model, 0)
        for i in range(m.OperatorCodesLength()):
            code = m.OperatorCodes(i).CustomCode()
            if code and code.decode(errors="replace").startswith("Flex"):
                names.add(code.decode(errors="replace")[4:])
    except (struct.error, IndexError, ValueError, TypeError, AttributeError):
        return []
    return sorted(names)


_FIRST_DELEGATE = threading.Lock()
_delegate_announced = False


@contextlib.contextmanager
def _quiet_first_delegate():
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to fd 2 on the first
    allocate of a process, whatever the log level. When the user asked TensorFlow's C++ code to be
    quiet (``TF_CPP_MIN_LOG_LEVEL=3``: the CLI's default), that first allocate runs with fd 2 on
    /dev/null; errors still arrive as Python exceptions. Later allocates print nothing anyway."""
    global _delegate_announced
    if _delegate_announced or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        yield
        return
    with _FIRST_DELEGATE:
        if _delegate_announced:
            yield
            return
        sys.stderr.flush()
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)
            _delegate_announced = True


def _quant(detail: dict) -> dict | None:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return None
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64)
    zeros = np.asarray(params.get("zero_points", []), dtype=np.int64)
    if scales.size == 0:
        scale, zero = detail.get("quantization", (0.0, 0))
        scales, zeros = np.array([scale], dtype=np.float64), np.array([zero], dtype=np.int64)
    if scales.size != 1 or not scales[0]:
        return None  # a genuine integer tensor (no per-tensor quantization): passed as is
    return {"dtype": dtype.name, "scale": float(scales[0]), "zero_point": int(zeros[0])}


def signature_io(it: Any, key: str | None = None) -> tuple[str | None, dict[str, dict], dict[str, dict]]:
    """The interpreter's inputs and outputs keyed by signature name, with the main graph's details.

    Picks ``key``, else ``serving_default``, else the only signature; names come from that
    signature when its tensors are the main graph's (so index-based resize/set/get address the
    right tensors), else the raw tensor names are used. The one implementation: the adapter, the
    exporter's load-back check and the raw benchmark call all use it.

    Returns:
        ``(signature key or None, {input name: detail}, {output name: detail})``.

    Raises:
        InputError: ``key`` is given and the file has no such signature.
    """
    in_details = {d["index"]: d for d in it.get_input_details()}
    out_details = {d["index"]: d for d in it.get_output_details()}
    ins = {d["name"]: d for d in in_details.values()}
    outs = {d["name"]: d for d in out_details.values()}
    sigs = it.get_signature_list() if hasattr(it, "get_signature_list") else {}
    if key is None:
        key = "serving_default" if "serving_default" in sigs else next(iter(sigs), None) if len(sigs) == 1 else None
    if key is None:
        return None, ins, outs
    if key not in sigs:
        raise InputError("TFLite signature not found", got=key, expected=sorted(sigs))
    sr = it.get_signature_runner(key)
    s_in, s_out = sr.get_input_details(), sr.get_output_details()
    if ({d["index"] for d in s_in.values()} == set(in_details)
            and {d["index"] for d in s_out.values()} == set(out_details)):
        ins = {n: in_details[d["index"]] for n, d in s_in.items()}
        outs = {n: out_details[d["index"]] for n, d in s_out.items()}
    return key, ins, outs


@register
class TFLiteRunner(Runner):
    """Runs a ``.tflite`` file with the LiteRT interpreter.

    Options:
        num_threads: interpreter threads (default None = the runtime's own default).
        signature: signature key to use (default None = ``serving_default`` or the only one).
        tuning: apply the settings ``edgekit bench --tune`` recorded for this file in its manifest
            (the XNNPACK thread count) to every option left at None (default True; see
            :mod:`edgekit.runtime.tuning`).
    """

    format = "tflite"
    OPTIONS = {"num_threads": None, "signature": None, "tuning": True}

    def _load(self) -> None:
        cls, desc = interpreter_class()
        from edgekit.runtime.tuning import apply as apply_tuning

        apply_tuning(self)
        kwargs: dict[str, Any] = {"model_path": str(self.path)}
        if self.options["num_threads"] is not None:
            kwargs["num_threads"] = int(self.options["num_threads"])
        # A file built with --tflite-select-tf-ops loads only where a Flex delegate is linked in. The
        # LiteRT wheel has none, but it picks up TensorFlow's when TensorFlow is loaded in the same
        # process (verify's reference runner does that): such a run is not what a device does, so
        # the file is refused up front rather than passed.
        flex = flex_op_names(self.path.read_bytes())
        if flex:
            raise Unverifiable(f"{desc} cannot load this file on a device: it uses Flex (TensorFlow) ops "
                               f"{', '.join(flex)} and the LiteRT wheel has no Flex delegate",
                               expected="a builtin-ops file (put model.keras beside the SavedModel, drop "
                                        "--tflite-select-tf-ops), or an app linking "
                                        "org.tensorflow:tensorflow-lite-select-tf-ops")
        self._it = it = cls(**kwargs)
        with _quiet_first_delegate():
            it.allocate_tensors()
        _, ins, outs = signature_io(it, self.options["signature"])
        self._in, self._out = ins, outs
        self.quantization = {n: q for n, d in {**ins, **outs}.items() if (q := _quant(d)) is not None}
        self.inputs = [self._info(n, d) for n, d in ins.items()]
        self.outputs = [self._info(n, d) for n, d in outs.items()]
        self._shapes = {n: tuple(int(s) for s in d["shape"]) for n, d in ins.items()}
        # quantized inputs: LiteRT's own quantize kernel (None = the numpy formula); outputs: float32 constants
        self._quantizers = {n: Quantizer.build(cls, self.quantization[n]) for n in ins if n in self.quantization}
        self._dequant = {n: (np.float32(q["zero_point"]), np.float32(q["scale"]))
                         for n, q in self.quantization.items() if n in outs}
        self.runtime_name = desc

    def _info(self, name: str, detail: dict) -> TensorInfo:
        sig = detail.get("shape_signature")
        dims = sig if sig is not None and len(sig) else detail["shape"]
        dtype = "float32" if name in self.quantization else np.dtype(detail["dtype"]).name
        return TensorInfo(name, tuple(None if int(d) < 0 else int(d) for d in dims), dtype)

    def _predict_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        it = self._it
        resized = False
        for name, arr in feeds.items():
            if self._shapes[name] != arr.shape:
                it.resize_tensor_input(self._in[name]["index"], list(arr.shape), strict=False)
                self._shapes[name] = arr.shape
                resized = True
        if resized:
            it.allocate_tensors()
        quantizers = self._quantizers
        for name, arr in feeds.items():
            if name in quantizers:
                fast = quantizers[name]
                arr = fast(name, arr) if fast is not None else self._quantize(name, arr, self.quantization[name])
            it.set_tensor(self._in[name]["index"], arr)
        it.invoke()
        result = {}
        for name, detail in self._out.items():
            raw = it.get_tensor(detail["index"])  # a copy (LiteRT's get_tensor copies)
            dq = self._dequant.get(name)
            if dq is not None:  # (q - zero_point) * scale in float32, in place on the new array
                raw = raw.astype(np.float32)
                np.subtract(raw, dq[0], out=raw)
                np.multiply(raw, dq[1], out=raw)
            result[name] = raw
        return result

    @staticmethod
    def _quantize(name: str, arr: np.ndarray, q: dict) -> np.ndarray:
        """The numpy reference path: NaN refused in one line, then :func:`quantize`."""
        return quantize_checked(name, arr, q)

    # ---------------------------------------------------------------- intermediates (edgekit explain)
    supports_intermediates = True

    def _intermediates_impl(self, feeds: dict[str, np.ndarray]):
        """Every op output of one run, dequantized, in execution order: a second interpreter with
        ``experimental_preserve_all_tensors`` and no default delegates (XNNPack would fuse and free them)."""
        from edgekit.runtime.intermediates import Intermediates, Producer

        cls, _ = interpreter_class()
        kwargs: dict[str, Any] = {"model_path": str(self.path), "experimental_preserve_all_tensors": True}
        try:
            from ai_edge_litert.interpreter import OpResolverType

            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        except ImportError:  # tflite-runtime: the same enum lives in its interpreter module
            resolver = getattr(__import__(cls.__module__, fromlist=["OpResolverType"]), "OpResolverType", None)
            if resolver is not None:
                kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": it is, here
            it = cls(**kwargs)
        for name, arr in feeds.items():
            it.resize_tensor_input(self._in[name]["index"], list(arr.shape), strict=False)
        it.allocate_tensors()
        for name, arr in feeds.items():
            q = self.quantization.get(name)
            it.set_tensor(self._in[name]["index"], self._quantize(name, arr, q) if q else arr)
        it.invoke()
        details = {d["index"]: d for d in it.get_tensor_details()}
        values, producers = {}, {}
        for op in it._get_ops_details():  # the public API has no op list; stable since TF 2.5
            ins = tuple(details[int(i)]["name"] for i in op["inputs"] if int(i) >= 0 and int(i) in details)
            for idx in op["outputs"]:
                d = details.get(int(idx))
                if d is None:
                    continue
                try:
                    raw = it.get_tensor(int(idx))
                except ValueError:  # freed or never allocated (e.g. a scratch tensor)
                    continue
                q = _quant(d)
                values[d["name"]] = (raw.astype(np.float32) - q["zero_point"]) * np.float32(q["scale"]) \
                    if q else np.array(raw, copy=True)
                producers[d["name"]] = Producer(str(op["op_name"]), d["name"], ins)
        outputs = {n: details[d["index"]]["name"] for n, d in self._out.items() if d["index"] in details}
        return Intermediates(values, producers, outputs=outputs)

    def _close(self) -> None:
        self._it = None

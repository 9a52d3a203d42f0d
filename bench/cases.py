"""Open one case and measure it: the edgekit adapter, the raw runtime call, or a TF baseline.

:func:`open_case` returns an :class:`Opened` whose :meth:`Opened.bind` prepares a batch
(resizing tensors once, quantizing int8 inputs once for the raw LiteRT call) and returns the
zero-argument callable that is timed. TensorFlow is imported only by the baseline openers,
and only when such a case runs. Raw TF.js is timed inside Node (:mod:`edgekit.bench.tfjs_raw`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgekit.bench import timing
from edgekit.bench.inputs import load_inputs
from edgekit.core.errors import DependencyError, UsageError


@dataclass
class Opened:
    """A loaded case: ``bind(feeds)`` returns the callable to time; ``close()`` releases it."""

    runtime: str
    load_s: float
    bind: Callable[[dict[str, np.ndarray]], Callable[[], Any]]
    close: Callable[[], None] = lambda: None
    threads_used: int | None = None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- thread settings
def configure_tensorflow(threads: int) -> None:
    """Set TF's intra/inter-op pools to ``threads`` (before TF runs its first op; ignored after)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # context already initialised: the env vars set by the worker apply
        pass


def thread_env(threads: int) -> dict[str, str]:
    """Environment that pins BLAS/OpenMP pools and TensorFlow to ``threads`` (set before imports)."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n}


# ---------------------------------------------------------------- edgekit adapters
def _adapter(case: dict, threads: int) -> Opened:
    from edgekit.runtime.registry import open_model, runner_class

    fmt, opts = case["format"], {}
    cls_opts = runner_class(fmt).OPTIONS
    if "num_threads" in cls_opts:
        opts["num_threads"] = threads
    if "intra_op_num_threads" in cls_opts:
        opts["intra_op_num_threads"] = threads
        opts["inter_op_num_threads"] = 1
    used = threads
    notes = []
    if fmt == "tfjs":
        from edgekit.runtime.tfjs import get_server

        opts["backend"] = case["backend"]
        get_server(case["backend"])  # the shared Node process starts outside the load timing
        used = 1
        notes.append("TF.js cpu/wasm backends run single-threaded here")
    t0 = time.perf_counter()
    runner = open_model(case["path"], format=fmt, **opts)
    load_s = time.perf_counter() - t0

    def bind(feeds):
        return lambda: runner.predict(feeds)

    return Opened(runner.runtime_name, load_s, bind, runner.close, used, notes)


# ---------------------------------------------------------------- raw runtimes
def _raw_tflite(case: dict, threads: int) -> Opened:
    try:
        from ai_edge_litert.interpreter import Interpreter

        desc = "ai-edge-litert Interpreter (raw)"
    except ImportError:
        from edgekit.runtime.tflite import interpreter_class

        Interpreter, desc = interpreter_class()
        desc += " (raw)"
    t0 = time.perf_counter()
    it = Interpreter(model_path=case["path"], num_threads=threads)
    it.allocate_tensors()
    load_s = time.perf_counter() - t0
    from edgekit.runtime.tflite import quantize, signature_io

    _, by_name, by_out = signature_io(it)
    ins, outs = list(by_name.values()), list(by_out.values())

    def bind(feeds):
        detail = {}
        for pos, (name, arr) in enumerate(feeds.items()):
            d = by_name.get(name) or ins[pos]
            q = d["quantization"]
            dtype = np.dtype(d["dtype"])
            if dtype.kind in "iu" and q[0]:
                arr = quantize(arr, q[0], q[1], dtype)  # TFLite's rounding, as the adapter does
            detail[d["index"]] = np.ascontiguousarray(arr)
            it.resize_tensor_input(d["index"], list(arr.shape), strict=False)
        it.allocate_tensors()
        out_idx = [d["index"] for d in outs]
        items = list(detail.items())

        def call():
            for i, a in items:
                it.set_tensor(i, a)
            it.invoke()
            return [it.get_tensor(i) for i in out_idx]

        return call

    return Opened(desc, load_s, bind, lambda: None, threads)


def _raw_onnx(case: dict, threads: int) -> Opened:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DependencyError("onnxruntime is not installed", got=str(exc), expected="pip install onnxruntime") from exc
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    t0 = time.perf_counter()
    sess = ort.InferenceSession(case["path"], sess_options=so, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    names = [i.name for i in sess.get_inputs()]

    def bind(feeds):
        f = feeds if set(feeds) == set(names) else dict(zip(names, feeds.values(), strict=False))
        return lambda: sess.run(None, f)

    return Opened(f"onnxruntime {ort.__version__} CPU session.run (raw)", load_s, bind, lambda: None, threads)


# ---------------------------------------------------------------- TF baselines
def _keras(case: dict, threads: int) -> Opened:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    configure_tensorflow(threads)
    import keras

    t0 = time.perf_counter()
    # safe_mode: a user's model.keras must not run Lambda code unless `edgekit bench --unsafe`
    model = keras.models.load_model(case["path"], compile=False, safe_mode=not case.get("unsafe", False))
    load_s = time.perf_counter() - t0

    def arg(feeds):
        return next(iter(feeds.values())) if len(feeds) == 1 else feeds

    if case["runner"] == "keras.predict":
        def bind(feeds):
            x = arg(feeds)
            return lambda: model.predict(x, batch_size=len(next(iter(feeds.values()))), verbose=0)
        label = f"keras {keras.__version__} model.predict"
    else:
        def bind(feeds):
            x = arg(feeds)
            return lambda: np.asarray(model(x, training=False))
        label = f"keras {keras.__version__} model(x, training=False)"
    return Opened(label, load_s, bind, lambda: None, threads,
                  ["predict gets batch_size = the batch, so one step per call"] if "predict" in label else [])


def _savedmodel(case: dict, threads: int) -> Opened:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    configure_tensorflow(threads)
    import tensorflow as tf

    t0 = time.perf_counter()
    obj = tf.saved_model.load(case["path"])
    fn = obj.signatures["serving_default"]
    load_s = time.perf_counter() - t0

    def bind(feeds):
        return lambda: {k: v.numpy() for k, v in fn(**{n: tf.constant(a) for n, a in feeds.items()}).items()}

    def close():
        nonlocal obj
        obj = None

    return Opened(f"tensorflow {tf.__version__} SavedModel signature", load_s, bind, close, threads)


OPENERS: dict[str, Callable[[dict, int], Opened]] = {
    "adapter": _adapter, "raw:tflite": _raw_tflite, "raw:onnx": _raw_onnx,
    "keras.predict": _keras, "keras.call": _keras, "savedmodel.signature": _savedmodel,
}


def open_case(case: dict, threads: int) -> Opened:
    """Load one case with ``threads`` threads (raw TF.js is not opened here: see :func:`measure`).

    Raises:
        UsageError: no opener for the case.
    """
    raw = case["runner"] == "raw" or case.get("kind") == "foreign"  # foreign files: the raw call
    key = f"raw:{case['format']}" if raw else case["runner"]
    opener = OPENERS.get(key)
    if opener is None:
        raise UsageError("no benchmark opener for this case", got=key, expected=sorted(OPENERS))
    return opener(case, threads)


def measure(case: dict, threads: int, budget: timing.Budget) -> dict:
    """Load and time one case; returns the measured fields of its row (exceptions propagate).

    The throughput batch is the largest power of two up to the inputs' rows (1024) whose call
    takes about ``budget.throughput_call_s`` at the measured batch-1 latency
    (:func:`edgekit.bench.timing.throughput_rows`); the row's ``throughput.batch`` says which.
    """
    x1, xn = load_inputs(case["inputs_file"])
    rows = len(next(iter(xn.values())))
    if case["runner"] == "raw" and case["format"] == "tfjs":
        from edgekit.bench.tfjs_raw import measure_in_node

        return measure_in_node(case, budget)
    opened = open_case(case, threads)
    paired = None
    try:
        f1 = opened.bind(x1)
        lat = timing.latency(f1, budget)
        n = timing.throughput_rows(lat["p50_ms"] / 1e3, rows, budget.throughput_call_s)
        if n == 1 and lat["p50_ms"] / 1e3 * 2 > budget.max_time:  # a slow call: batch 1 is the batch-1 loop
            thr = {"rows_per_s": 1e3 / lat["p50_ms"], "batch_ms": lat["p50_ms"], "calls": lat["calls"], "batch": 1,
                   "from": "the batch-1 loop (one call exceeds half the time box)"}
        else:
            thr = timing.throughput(opened.bind({k: v[:n] for k, v in xn.items()}), n, budget)
        if case["runner"] == "adapter" and case["format"] in PAIRED_FORMATS:
            paired = _paired(case, threads, f1, x1, budget)
        elif case.get("kind") == "foreign" and case.get("pair_path"):  # vs edgekit's own fp32 file
            # re-bound: the throughput bind resized the raw interpreter's tensors to batch N
            paired = _paired({**case, "path": case["pair_path"]}, threads, opened.bind(x1), x1, budget)
    finally:
        opened.close()
    out = {"runtime": opened.runtime, "load_s": opened.load_s, "threads_used": opened.threads_used,
           "latency": lat, "throughput": thr, "notes": opened.notes}
    if paired is not None:
        out["paired"] = paired
    return out


PAIRED_FORMATS = ("tflite", "onnx")
PAIRED_BLOCK = 10


def _paired(case: dict, threads: int, adapter_call: Callable[[], Any], x1: dict, budget: timing.Budget) -> dict:
    """Adapter vs raw call on the same file in the same process, in alternating blocks of
    ``PAIRED_BLOCK`` calls for about ``budget.min_time`` seconds (at least 3 blocks each): load from
    elsewhere hits both alike, so the overhead is not the difference of two runs minutes apart.
    For a foreign export ``adapter_call`` is its raw call and ``case["path"]`` edgekit's fp32 file
    (``adapter_p50_ms`` is then the foreign file's, ``raw_p50_ms`` edgekit's)."""
    raw = open_case({**case, "runner": "raw", "kind": "raw"}, threads)
    try:
        raw_call = raw.bind(x1)
        timing.warm_up(raw_call, 3, 0.0, cap=budget.max_time / 4)
        got = timing.alternating({"adapter": adapter_call, "raw": raw_call}, max(budget.min_time, 0.05),
                                 budget.max_time, PAIRED_BLOCK)
    finally:
        raw.close()
    a, r = sorted(got["adapter"]), sorted(got["raw"])
    pa, pr = timing.percentile(a, 50) * 1e3, timing.percentile(r, 50) * 1e3
    return {"adapter_p50_ms": pa, "raw_p50_ms": pr, "overhead": pa / pr - 1.0 if pr > 0 else None,
            "overhead_us": (pa - pr) * 1e3, "calls": len(a), "how": f"alternating blocks of {PAIRED_BLOCK} calls"}


def run_once(case: dict, threads: int) -> None:
    """Load a case and run it at batch 1 (a few calls) and at batch N once: what the RSS probe does."""
    x1, xn = load_inputs(case["inputs_file"])
    opened = open_case(case, threads)
    try:
        f1 = opened.bind(x1)
        for _ in range(5):
            f1()
        opened.bind(xn)()
    finally:
        opened.close()

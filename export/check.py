"""``edgekit check``: before converting, what each format will make of a model, and why.

For a SavedModel, an example directory or a ``.keras`` file, in seconds and without running a
converter: the serving graph's ops (frozen, functions inlined; an RNN's unrolled re-trace when
``model.keras`` is at hand, as export does), then per format

- the rewrites edgekit would apply (:mod:`edgekit.export.legalize`) and the ops left after them;
- for each op, whether the converter has it and whether the runtime edgekit verifies with can
  run it (:mod:`edgekit.export.opsupport`: tensorflowjs' op list, coremltools' TF op registry
  and the MIL ops its handlers emit against the Core ML reference evaluator, tf2onnx's
  handlers, TFLite builtins vs Flex);
- the dtype contract: the dtypes each format's file will take and give;
- a verdict: ``ok``, ``fails`` (the converter or the runtime lacks an op, named), ``flex``
  (TFLite only with Flex ops, which ai-edge-litert cannot load), ``unverified`` (converts, but
  the Core ML reference evaluator lacks a MIL op it may emit) or ``warn`` (a construct that
  fails in some models and not others, e.g. a recurrent while loop on TF.js).

:func:`check` opens the source itself; :func:`check_source` takes an already opened
:class:`~edgekit.export.source.SourceModel` (what ``export`` would call before converting).
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgekit.core.formats import FORMATS
from edgekit.export import graph as graph_mod
from edgekit.export import legalize as lg
from edgekit.export import opsupport as sup

VERDICTS = ("ok", "warn", "fails", "flex", "unverified")
#: what a format's file takes and gives for each SavedModel dtype (absent: unchanged).
DTYPE_CONTRACT = {
    "tflite": {},
    "coreml": {"int64": "int32", "float64": "float32", "bool": "int32", "int8": "int32", "int16": "int32",
               "uint8": "int32", "uint16": "int32"},
    "tfjs": {"int64": "int32 (same values)", "int8": "int32 (same values)", "int16": "int32 (same values)",
             "uint8": "int32 (same values)", "uint16": "int32 (same values)", "float64": "float32",
             "float16": "float32"},
    "onnx": {},
}


@dataclass
class FormatCheck:
    """What one format will make of the model.

    Attributes:
        format: the format name.
        verdict: one of :data:`VERDICTS`.
        reason: why, in one line ("" when ok).
        rewrites: the rewrites edgekit applies for this format.
        ops: per op left after the rewrites: ``{"op", "count", "converter", "runtime"}`` (each
            ``"ok"`` or why not).
        dtypes: ``{"inputs": {name: dtype}, "outputs": {name: dtype}}`` as the format's file has them.
        notes: other facts (precision-specific ones, such as int8's quantized I/O).
    """

    format: str
    verdict: str
    reason: str = ""
    rewrites: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    dtypes: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


@dataclass
class CheckReport:
    """The result of :func:`check`: ``bool(report)`` is True when every checked format is ``ok``.

    Attributes:
        source: what was checked.
        graph: which graph the converters would get (serving signature or the unrolled re-trace).
        ops: ``{op: count}`` of the graph before any rewrite (trivial ops left out).
        formats: one :class:`FormatCheck` per format.
        seconds: time taken.
    """

    source: str
    graph: str
    ops: dict
    formats: list
    seconds: float = 0.0
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return all(f.verdict == "ok" for f in self.formats)

    def get(self, fmt: str) -> FormatCheck | None:
        return next((f for f in self.formats if f.format == fmt), None)

    def predicted_failures(self) -> list[str]:
        """One line per format that will not give a verified file: ``"coreml: fails: ..."``."""
        return [f"{f.format}: {f.verdict}: {f.reason}" for f in self.formats if f.verdict != "ok"]

    def to_dict(self) -> dict:
        return {"source": self.source, "graph": self.graph, "ops": self.ops, "seconds": round(self.seconds, 2),
                "inputs": self.inputs, "outputs": self.outputs, "ok": bool(self),
                "formats": [asdict(f) for f in self.formats]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self, markdown: bool = False) -> str:
        """Two tables: the verdict per format, and each op's support per format."""
        from edgekit.core.table import render

        rows, notes = [], []
        for f in self.formats:
            dt = ", ".join(f"{k}: {v}" for k, v in {**f.dtypes.get("inputs", {}),
                                                      **f.dtypes.get("outputs", {})}.items())
            rows.append((f.format, f.verdict, ", ".join(f.rewrites) or "-", dt))
            notes.append(f.reason or None)
        head = render(("format", "verdict", "rewrites", "dtypes (inputs, outputs)"), rows, markdown=markdown,
                      notes=None if markdown else notes)
        names = sorted({o["op"] for f in self.formats for o in f.ops} | set(self.ops))
        cells = []
        for op in names:
            row = [op, str(self.ops.get(op, "+"))]
            for f in self.formats:
                entry = next((o for o in f.ops if o["op"] == op), None)
                if entry is None:
                    row.append("rewritten" if op in self.ops else "-")
                else:
                    bad = [v for v in (entry["converter"], entry["runtime"]) if v != "ok"]
                    row.append("ok" if not bad else "no: " + "; ".join(bad)[:70])
            cells.append(row)
        ops = render(("op", "count", *[f.format for f in self.formats]), cells, markdown=markdown)
        return f"{head}\n\n{ops}"


def _dtypes(fmt: str, infos: list[dict]) -> dict:
    table = DTYPE_CONTRACT.get(fmt, {})
    return {i["name"]: table.get(i.get("dtype", "float32"), i.get("dtype", "float32")) for i in infos}


def _op_entry(fmt: str, op: str, count: int, opset: int, evaluator_ops: frozenset) -> dict:
    conv, run = "ok", "ok"
    if fmt == "tflite":
        status, note = sup.tflite_support(op)
        if status in ("flex", "tensorlist"):
            conv = note
    elif fmt == "coreml":
        if op not in sup.coreml_ops():
            conv = "not in coremltools' TF op registry"
        else:
            missing = sorted(sup.coreml_mil_ops(op) - evaluator_ops - {"const", "cast"})
            if missing:
                run = f"reference evaluator lacks MIL {', '.join(missing)}"
    elif fmt == "tfjs":
        if op not in sup.tfjs_ops():
            conv = "not in tensorflowjs 4.22's op list"
    elif fmt == "onnx":
        if op not in sup.onnx_ops(opset):
            conv = f"no tf2onnx handler at opset {opset}"
    if conv == "ok" and op in sup.CONVERTER_GAPS.get(fmt, {}):
        conv = sup.CONVERTER_GAPS[fmt][op]
    gaps = sup.runtime_gap(fmt, op)
    if gaps and run == "ok":
        run = "; ".join(f"{b}: {w}" if b != "*" else w for b, w in gaps.items())
    return {"op": op, "count": count, "converter": conv, "runtime": run}


def _verdict(fmt: str, ops: list[dict], loops: list, select_tf_ops: bool) -> tuple[str, str]:
    conv_bad = [o for o in ops if o["converter"] != "ok"]
    run_bad = [o for o in ops if o["runtime"] != "ok"]
    loop_note = ""
    if loops:
        loop_note = (" (a Keras 3 recurrent loop: put model.keras beside the SavedModel for edgekit's unrolled "
                     "re-trace)")
    if fmt == "tflite" and conv_bad:
        names = ", ".join(o["op"] for o in conv_bad)
        if select_tf_ops:
            return "flex", f"Flex ops {names}: ai-edge-litert cannot load the file{loop_note}"
        return "fails", f"no TFLite builtin for {names} (--tflite-select-tf-ops makes Flex ops){loop_note}"
    if conv_bad:
        return "fails", "converter lacks " + "; ".join(f"{o['op']} ({o['converter']})" for o in conv_bad) + loop_note
    uncertain = [o for o in run_bad if any(u in o["runtime"] for u in sup.UNCERTAIN)]
    run_bad = [o for o in run_bad if o not in uncertain]
    fatal = [o for o in run_bad if "wasm:" not in o["runtime"] and "reference evaluator" not in o["runtime"]]
    if fatal:
        return "fails", "; ".join(f"{o['op']}: {o['runtime']}" for o in fatal) + loop_note
    if fmt == "coreml" and run_bad:
        return "unverified", "; ".join(f"{o['op']}: {o['runtime']}" for o in run_bad)
    if run_bad:  # one backend only (TF.js wasm): the file runs elsewhere
        return "fails", "; ".join(f"{o['op']}: {o['runtime']}" for o in run_bad)
    if uncertain:
        return "warn", "; ".join(f"{o['op']}: {o['runtime']}" for o in uncertain) + loop_note
    return "ok", ""


def check_source(src, formats: list[str] | None = None, opset: int = 17, select_tf_ops: bool = False,
                 options=None) -> CheckReport:
    """Check an opened SourceModel (see the module docstring); nothing is converted or written.

    Args:
        src: a :class:`~edgekit.export.source.SourceModel`.
        formats: formats to check (default None: all of :data:`edgekit.core.formats.FORMATS`).
        opset: the ONNX opset export would use (default 17).
        select_tf_ops: whether TFLite may use Flex ops (default False, as export).
        options: export options, for the probe rows of the re-trace check (default None).
    """
    from edgekit.runtime.coreml_ops import OPS as EVALUATOR_OPS

    t0 = time.perf_counter()
    base = graph_mod._base(src)
    gd = base["graph_def"]
    counts = Counter(n.op for n in gd.node if n.op not in sup.TRIVIAL)
    for f in gd.library.function:
        counts.update(n.op for n in f.node_def if n.op not in sup.TRIVIAL)
    shapes = None
    out = []
    for fmt in formats or list(FORMATS):
        rewrites = lg.for_format(fmt)
        g2 = copy.deepcopy(gd)
        if shapes is None and any(n.op in ("Einsum", "Cumsum", "Cumprod") for n in gd.node):
            shapes = graph_mod.static_shapes(gd)
        keep = [ref.split(":")[0] for ref in base["outputs"].values()]
        g2, applied = lg.legalize(g2, rewrites, shapes, keep=keep)
        after = Counter(n.op for n in g2.node if n.op not in sup.TRIVIAL)
        for f in g2.library.function:
            after.update(n.op for n in f.node_def if n.op not in sup.TRIVIAL)
        ops = [_op_entry(fmt, op, c, opset, frozenset(EVALUATOR_OPS)) for op, c in sorted(after.items())]
        verdict, reason = _verdict(fmt, ops, base["loops"], select_tf_ops)
        notes = []
        if fmt == "tflite" and any(i.get("dtype", "float32").startswith("float") for i in src.inputs):
            notes.append("int8 variant: float inputs and outputs become int8 (scale/zero point in the manifest)")
        if base.get("retrace_error"):
            notes.append(f"unrolled re-trace impossible: {base['retrace_error']}")
        out.append(FormatCheck(fmt, verdict, reason, [a["name"] for a in applied], ops,
                               {"inputs": _dtypes(fmt, src.inputs), "outputs": _dtypes(fmt, src.outputs)}, notes))
    return CheckReport(source=str(src.path), graph=base["note"], ops=dict(sorted(counts.items())), formats=out,
                       seconds=time.perf_counter() - t0, inputs=list(src.inputs), outputs=list(src.outputs))


@contextlib.contextmanager
def _quiet():
    """TensorFlow's and the converters' C++ chatter (fd 1/2) and Python warnings off for the block."""
    import os
    import sys
    import warnings

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [(fd, os.dup(fd)) for fd in (1, 2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd, _ in saved:
            os.dup2(null, fd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, dup in saved:
            os.dup2(dup, fd)
            os.close(dup)
        os.close(null)


def check(model, formats: list[str] | None = None, opset: int = 17, select_tf_ops: bool = False,
          unsafe: bool = False, quiet: bool = True) -> CheckReport:
    """Check what each format will make of ``model`` before converting it.

    Args:
        model: a SavedModel directory, an ``artifacts/<example>`` directory or a ``.keras`` file.
        formats: formats to check (default None: every format).
        opset: ONNX opset (default 17).
        select_tf_ops: TFLite may use Flex ops (default False).
        unsafe: load a ``.keras`` holding Lambda layers (default False: refused).
        quiet: silence TensorFlow's and the converters' console output meanwhile (default True).

    Returns:
        A :class:`CheckReport` (``bool(report)``: every format ``ok``; ``report.table()``,
        ``report.to_json()``).

    Raises:
        UsageError, InputError: unknown format, or a SOURCE export would refuse.
    """
    from edgekit.core.errors import UsageError
    from edgekit.export import source as source_mod

    bad = sorted(set(formats or []) - set(FORMATS))
    if bad:
        raise UsageError("unknown format", got=bad, expected=list(FORMATS))
    t0 = time.perf_counter()
    path = Path(model)
    spec = source_mod.classify(path)
    with tempfile.TemporaryDirectory(prefix="edgekit-check-") as tmp, (_quiet() if quiet else contextlib.nullcontext()):
        if spec.kind == "keras":
            from edgekit.export import keras_source

            plan = keras_source.prepare("keras", spec.path, None, unsafe)
            src = keras_source.materialise(plan, Path(tmp))
        else:
            src = source_mod.open_source(path)
        report = check_source(src, formats, opset, select_tf_ops)
    report.source = str(path)
    report.seconds = time.perf_counter() - t0
    return report


def preflight(src, formats: list[str], options=None) -> list[str]:
    """What ``export`` should say before converting: one line per format check predicts will not
    give a verified file (empty when all look fine). Reuses the frozen graph the exporters use
    (cached on ``src.cache``), so it costs the dry-run rewrites only.

    Args:
        src: the opened :class:`~edgekit.export.source.SourceModel`.
        formats: the formats about to be exported.
        options: the run's :class:`~edgekit.export.base.ExportOptions` (default None: opset 17,
            no Flex ops).
    """
    opset = getattr(options, "opset", 17)
    flex = bool(getattr(options, "tflite_select_tf_ops", False))
    return check_source(src, list(dict.fromkeys(formats)), opset, flex, options).predicted_failures()

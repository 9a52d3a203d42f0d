"""ONNX adapter: onnxruntime on the CPU execution provider.

Symbolic or unknown dimensions (``"unk__6"``, ``"batch"``, ``None``) are reported as ``None``.
On a device::

    import onnxruntime as ort
    sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    y = sess.run(None, {"features": x})[0]
"""

from __future__ import annotations

import numpy as np

from edgekit.core.errors import DependencyError
from edgekit.runtime.base import Runner, TensorInfo
from edgekit.runtime.registry import register

#: onnxruntime type strings -> numpy dtype names.
ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
    "tensor(int32)": "int32", "tensor(uint32)": "uint32", "tensor(int64)": "int64",
    "tensor(uint64)": "uint64", "tensor(bool)": "bool",
}


def _info(node) -> TensorInfo:
    dtype = ORT_DTYPES.get(node.type)
    if dtype is None:
        from edgekit.core.errors import RuntimeFailure

        raise RuntimeFailure(f"ONNX tensor {node.name!r} has an unsupported type", got=node.type,
                             expected=sorted(ORT_DTYPES))
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (node.shape or ()))
    return TensorInfo(node.name, shape, dtype)


@register
class OnnxRunner(Runner):
    """Runs a ``.onnx`` file with onnxruntime's CPUExecutionProvider.

    Options:
        intra_op_num_threads: threads inside one operator (default None = onnxruntime's default,
            one per core).
        inter_op_num_threads: threads across operators (default None = onnxruntime's default).
        graph_optimization_level: ``"disable"``, ``"basic"``, ``"extended"`` or ``"all"`` (default
            None = onnxruntime's default, all).
        tuning: apply the settings ``edgekit bench --tune`` recorded for this file in its manifest
            to every option left at None (default True; see :mod:`edgekit.runtime.tuning`).
    """

    format = "onnx"
    OPTIONS = {"intra_op_num_threads": None, "inter_op_num_threads": None, "graph_optimization_level": None,
               "tuning": True}

    def _load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DependencyError("onnxruntime is not installed", got=str(exc),
                                  expected="pip install onnxruntime (or make setup)") from exc
        so = ort.SessionOptions()
        so.log_severity_level = 3
        from edgekit.runtime.tuning import apply as apply_tuning
        from edgekit.runtime.tuning import ort_level

        apply_tuning(self)
        if self.options["graph_optimization_level"] is not None:
            so.graph_optimization_level = ort_level(ort, self.options["graph_optimization_level"])
        if self.options["intra_op_num_threads"] is not None:
            so.intra_op_num_threads = int(self.options["intra_op_num_threads"])
        if self.options["inter_op_num_threads"] is not None:
            so.inter_op_num_threads = int(self.options["inter_op_num_threads"])
        self._sess = ort.InferenceSession(str(self.path), sess_options=so, providers=["CPUExecutionProvider"])
        self.inputs = [_info(n) for n in self._sess.get_inputs()]
        self.outputs = [_info(n) for n in self._sess.get_outputs()]
        self._names = [o.name for o in self.outputs]
        self.runtime_name = f"onnxruntime {ort.__version__} CPU"

    def _predict_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._names, self._sess.run(self._names, feeds), strict=True))

    # ---------------------------------------------------------------- intermediates (edgekit explain)
    supports_intermediates = True

    def _intermediates_impl(self, feeds: dict[str, np.ndarray]):
        """Every top-level node output of one run, in node order: a session on an in-memory copy whose
        node outputs are all graph outputs (:mod:`edgekit.runtime.onnx_graph`), graph optimisations off
        so no node is fused away."""
        import onnxruntime as ort

        from edgekit.runtime import onnx_graph
        from edgekit.runtime.intermediates import Intermediates, Producer

        model = self.path.read_bytes()
        graph_nodes, inits, outs = onnx_graph.nodes(model)
        names = [o for n in graph_nodes for o in n.outputs if o and o not in outs]
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(onnx_graph.with_outputs(model, names), sess_options=so,
                                    providers=["CPUExecutionProvider"])
        wanted = [o.name for o in sess.get_outputs()]
        got = dict(zip(wanted, sess.run(wanted, feeds), strict=True))
        values, producers = {}, {}
        for n in graph_nodes:
            for o in n.outputs:
                if o in got:
                    values[o] = np.asarray(got[o])
                    producers[o] = Producer(n.op, n.name, tuple(i for i in n.inputs if i and i not in inits))
        return Intermediates(values, producers, outputs={o: o for o in self._names if o in values})

    def _close(self) -> None:
        self._sess = None

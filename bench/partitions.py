"""How a ``.tflite`` file runs under LiteRT's default XNNPACK delegate: its delegate partitions.

After ``allocate_tensors`` the interpreter holds one ``DELEGATE`` node per partition XNNPACK took
(the ops it left out run between them on LiteRT's own kernels). Each extra partition costs a
hand-over between XNNPACK and the builtin kernels (and their tensor copies) per call; a graph whose
every op XNNPACK takes runs as one partition.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def delegate_partitions(path: str | Path, threads: int = 1) -> dict:
    """Delegate partitions of one ``.tflite`` file.

    Args:
        path: the file.
        threads: interpreter threads (default 1; does not change the partitioning).

    Returns:
        ``{"partitions": number of DELEGATE nodes, "ops": {op name: count}}`` (``ops``: every op of
        the file, delegated or not: the Python API does not expose the execution plan).
    """
    from edgekit.runtime.tflite import interpreter_class

    cls, _ = interpreter_class()
    it = cls(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    ops = _op_counts(it)
    partitions = ops.pop("DELEGATE", 0)
    return {"partitions": partitions, "ops": dict(sorted(ops.items()))}


def partition_count(interpreter) -> int:
    """DELEGATE nodes of an allocated interpreter (what :func:`delegate_partitions` reports)."""
    return _op_counts(interpreter).get("DELEGATE", 0)


def _op_counts(interpreter) -> Counter:
    # _get_ops_details: no public op list; stable since TF 2.5
    return Counter(str(op["op_name"]) for op in interpreter._get_ops_details())

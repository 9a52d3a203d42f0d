"""What :meth:`edgekit.runtime.base.Runner.intermediates` returns (``edgekit explain``): every
internal tensor of one run, in execution order, with the op that computed it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Producer:
    """The op that computed an intermediate tensor: its type (``FULLY_CONNECTED``, ``MatMul``), its
    own name where the format names ops (ONNX nodes, TF.js nodes; else the tensor's name), and the
    tensors it read."""

    op: str
    name: str
    inputs: tuple[str, ...] = ()


class Intermediates(dict):
    """What :meth:`Runner.intermediates` returns: ``{tensor name: array}`` in execution order, plus
    ``producers`` (``{tensor name: Producer}``), ``outputs`` (``{model output name: tensor name}``:
    which tensor each of :attr:`Runner.outputs` is) and ``notes`` (what could not be exposed)."""

    def __init__(self, values: Mapping[str, np.ndarray], producers: Mapping[str, Producer] | None = None,
                 notes: list[str] | None = None, outputs: Mapping[str, str] | None = None):
        super().__init__(values)
        self.producers: dict[str, Producer] = dict(producers or {})
        self.notes: list[str] = list(notes or [])
        self.outputs: dict[str, str] = dict(outputs or {})

"""Parity judgement: comparison, the tolerance policy, task metrics, golden data, verify.

Sits on :mod:`edgekit.runtime` (the device adapters) and below export, bench, report, web
and the CLI. numpy only; the SavedModel/Keras reference runners (:mod:`.reference`)
import TensorFlow lazily, when a reference row runs.
"""

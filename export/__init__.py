"""Exporters: one model to TFLite/LiteRT, Core ML, TensorFlow.js and ONNX.

``edgekit.export(model_or_path, ...)`` (this package, called) runs
:func:`edgekit.export.api.export`; :mod:`edgekit.export.registry` holds one exporter per
format (the formats themselves are listed in :mod:`edgekit.core.formats`). Nothing heavy is
imported here.
"""

from edgekit.core.callmod import make_callable

make_callable(__name__, "edgekit.export.api:export")

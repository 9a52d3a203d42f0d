"""Exporters: one SavedModel to TFLite/LiteRT, Core ML, TensorFlow.js and ONNX.

``export.registry`` is the one list of formats; ``export.api.export_model`` runs an
export; ``export.cli`` adds ``edgekit export``. Nothing heavy is imported here.
"""

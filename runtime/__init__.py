"""The device side: TensorFlow-free runtime adapters, their registry, manifests and integrity.

The bottom layer above :mod:`edgekit.core`: numpy and the edge runtimes only (ai-edge-litert,
onnxruntime; Node.js + TF.js for TF.js files; coremltools for the Core ML reference
evaluator). Nothing here imports TensorFlow or Keras (checked by import-linter in
``make test``), so a Raspberry Pi installs ``edgekit`` with only these.
"""

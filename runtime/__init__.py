"""Device-side runtime: TensorFlow-free adapters, parity checks and reports.

Needs only numpy and the edge runtimes (ai-edge-litert, onnxruntime; Node.js for
TF.js; coremltools for the Core ML reference evaluator). TensorFlow is imported
only inside the SavedModel adapter, lazily.
"""

"""``edgekit.serve``: exported models on a maintained inference server (MLServer, Seldon's; KServe's runtime).

``edgekit serve DIR...`` runs MLServer with edgekit's runtime adapters as MLServer runtimes:
the Open Inference Protocol v2 over REST and gRPC (with Triton's binary tensor extension),
TensorFlow Serving's REST API on the same port, health and readiness, adaptive batching, every
file's sha256 checked before it is served and every request checked before it is batched.

Modules: :mod:`~edgekit.serve.plan` (what is served, from the manifests),
:mod:`~edgekit.serve.runtime` (the MLServer runtime), :mod:`~edgekit.serve.guard` (per-request
checks), :mod:`~edgekit.serve.binary` (binary tensors), :mod:`~edgekit.serve.tfserving`
(``/v1/models/...``), :mod:`~edgekit.serve.server` (the server). Needs ``pip install 'edgekit[serve]'``.
"""

"""Training modules: the Keras tutorial's examples, each registered by name.

Importing this package is cheap; Keras and its backend are imported only when an example
trains. Training runs on any Keras 3 backend (``backends.py``: TensorFlow and JAX with a
compiled-epoch fast path, torch through Keras' fit) and data-parallel (``distribute.py``,
``multiworker.py``); the SavedModel is always written on TensorFlow (``tf_export.py``).
``train`` depends on neither ``export`` nor ``runtime``.
"""

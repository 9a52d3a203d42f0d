"""Training modules: the Keras tutorial's examples, each registered by name.

Importing this package is cheap; TensorFlow is imported only when an example
trains. ``train`` depends on neither ``export`` nor ``runtime``.
"""

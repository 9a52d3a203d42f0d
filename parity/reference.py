"""SavedModel adapter: TensorFlow itself, the reference for SavedModels without a ``reference.npz``.

The only module of ``runtime/`` that imports TensorFlow, and only inside ``_load``. Uses the
``serving_default`` signature (or the only signature), called with keyword tensors; outputs
are the signature's structured outputs keyed by name::

    import tensorflow as tf
    fn = tf.saved_model.load("saved_model/1").signatures["serving_default"]
    y = fn(features=tf.constant(x))["output_0"].numpy()
"""

from __future__ import annotations

import os

import numpy as np

from edgekit.core.errors import DependencyError, InputError
from edgekit.runtime.base import Runner, TensorInfo
from edgekit.runtime.registry import register


@register
class SavedModelRunner(Runner):
    """Runs a SavedModel directory with TensorFlow (imported lazily).

    Options:
        signature: signature key (default None = ``serving_default``, or the only signature).
    """

    format = "savedmodel"
    OPTIONS = {"signature": None}

    def _load(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import tensorflow as tf
        except ImportError as exc:
            raise DependencyError("TensorFlow is needed to run a SavedModel", got=str(exc),
                                  expected="pip install 'edgekit[export]' (or make setup)") from exc
        self._tf = tf
        self._obj = tf.saved_model.load(str(self.path))  # kept alive: the signature needs its variables
        sigs = dict(self._obj.signatures)
        key = self.options["signature"] or ("serving_default" if "serving_default" in sigs
                                            else next(iter(sigs)) if len(sigs) == 1 else None)
        if key not in sigs:
            raise InputError("SavedModel signature not found", got=key or f"{len(sigs)} signatures",
                             expected=sorted(sigs) or "a SavedModel exported with a serving signature")
        self._fn = fn = sigs[key]
        specs = fn.structured_input_signature[1]
        self.inputs = [TensorInfo(n, tuple(s.shape.as_list()), s.dtype.as_numpy_dtype.__name__)
                       for n, s in sorted(specs.items())]
        outs = fn.structured_outputs
        self.outputs = [TensorInfo(n, tuple(t.shape.as_list()), t.dtype.as_numpy_dtype.__name__)
                        for n, t in sorted(outs.items())]
        self.runtime_name = f"tensorflow {tf.__version__} SavedModel"

    def _predict_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._fn(**{k: self._tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}

    def _close(self) -> None:
        self._fn = self._obj = None

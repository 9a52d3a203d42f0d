"""Reference runners: the SavedModel (TensorFlow itself) and the Keras model (``.keras``).

The SavedModel runner runs the exported SavedModel for the ``savedmodel`` row and is the
reference for a bare SavedModel without a Keras model; the Keras runner computes golden
outputs with Keras when verify is given new inputs. TensorFlow and Keras are imported inside
``_load`` only. Uses the
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


def import_tensorflow_quietly():
    """Import TensorFlow with its C++ start-up chatter (absl/XLA registration warnings, written to
    fd 2 before any log level applies) discarded; call it from the main thread, before worker
    threads start. Returns the module.

    Raises:
        DependencyError: TensorFlow is not installed.
    """
    import sys

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import tensorflow as tf
    except ImportError as exc:
        raise DependencyError("TensorFlow is needed to run a SavedModel or a Keras model", got=str(exc),
                              expected="pip install 'edgekit[export]' (or make setup)") from exc
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return tf


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


@register
class KerasRunner(Runner):
    """Runs a ``.keras`` file with Keras itself (TensorFlow backend): the reference for every format.

    Loaded with ``safe_mode=True`` and ``compile=False`` (see :func:`edgekit.parity.keras_model.load_keras`);
    ``predict`` is ``model.predict`` in inference mode, outputs named ``output_0``, ``output_1``, ...
    as ``model.export`` names them::

        import keras
        model = keras.saving.load_model("model.keras", compile=False)
        y = model.predict(x)

    Options:
        unsafe: load Lambda layers and other stored code (default False).
    """

    format = "keras"
    OPTIONS = {"unsafe": False}

    def _load(self) -> None:
        import keras

        from edgekit.parity import keras_model as km

        self._model = km.load_keras(self.path, unsafe=bool(self.options["unsafe"]))
        self.inputs = [TensorInfo(i["name"], tuple(i["shape"]), i["dtype"]) for i in km.input_specs(self._model)]
        names = km.output_names(self._model)
        outs = list(getattr(self._model, "outputs", None) or [])
        if len(outs) == len(names):  # a functional/built model: its symbolic outputs say shape and dtype
            self.outputs = [TensorInfo(n, (None, *tuple(o.shape)[1:]), str(getattr(o, "dtype", "float32")))
                            for n, o in zip(names, outs, strict=True)]
        else:  # a subclassed model without symbolic outputs: only the batch axis is known
            self.outputs = [TensorInfo(n, (None,), "float32") for n in names]
        self.runtime_name = f"keras {keras.__version__} model.predict ({keras.backend.backend()} backend)"

    @property
    def model(self):
        """The loaded Keras model."""
        return self._model

    def integer_ranges(self) -> dict:
        """``{input name: (lo, hi, why)}`` read from the Embedding layers (``keras_model.integer_ranges``)."""
        from edgekit.parity import keras_model as km

        return km.integer_ranges(self._model)

    def _predict_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from edgekit.parity import keras_model as km

        return km.keras_outputs(self._model, feeds, [o.name for o in self.outputs])

    def _close(self) -> None:
        self._model = None

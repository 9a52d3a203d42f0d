"""The fallback trainer for backends without a compiled-epoch path (torch): Keras' own ``fit``.

Same batches, loss (plus the model's regularisation losses), optimizer and callbacks as the
compiled trainers, with Keras' seeded shuffle every epoch and its short last batch; it pays
Keras' per-epoch bookkeeping (25-50 ms an epoch on these data sets) because nothing compiles
whole epochs on torch here. The interface is :class:`edgekit.train.fit.Trainer`'s, so the
examples and the grid search do not know which backend runs.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from edgekit.train.fit import History, _targets


class KerasFitTrainer:
    """:class:`edgekit.train.fit.Trainer`'s interface over ``model.compile`` + ``model.fit``.

    Args: as :class:`edgekit.train.fit.Trainer`; ``capacity``, ``val_capacity``, ``jit_compile``
    and ``fixed_rows`` only bound the rows a fit may pass (no compilation happens here).
    """

    def __init__(self, model, optimizer, loss: str, batch_size: int, capacity: int, n_features: int,
                 target_shape: tuple = (1,), val_capacity: int = 0, jit_compile: bool = True,
                 fixed_rows: bool = False):
        self.model, self.optimizer, self.loss, self.batch_size = model, optimizer, loss, batch_size
        self.capacity, self.val_capacity = capacity, val_capacity
        model.compile(optimizer=optimizer, loss=loss)

    def fit(self, x, y, *, epochs: int, seed: int = 0, validation=None, callbacks=None,
            progress: Callable | None = None, epochs_per_call: int | None = None) -> History:
        """Train for ``epochs`` on ``(x, y)``; see :func:`edgekit.train.fit.fit` for the arguments."""
        import keras

        x = np.asarray(x, np.float32)
        if not 0 < len(x) <= self.capacity:
            raise ValueError(f"rows must be in 1..{self.capacity}, got {len(x)}")
        hist = History()
        if validation is not None:
            hist.history["val_loss"] = []
            validation = (np.asarray(validation[0], np.float32), _targets(validation[1], self.loss))

        def on_epoch_end(epoch, logs):
            hist.history["loss"].append(float(logs["loss"]))
            if validation is not None:
                hist.history["val_loss"].append(float(logs["val_loss"]))
            hist.epoch_axis.append(epoch + 1)
            if progress is not None:
                progress(epoch + 1, epochs, float(logs["loss"]))

        keras.utils.set_random_seed(seed)  # Keras' shuffle draws from the global seed
        t0 = time.perf_counter()
        # the recorder first: EarlyStopping may end training at this epoch's end
        cbs = [keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end), *(callbacks or [])]
        self.model.fit(x, _targets(y, self.loss), batch_size=self.batch_size, epochs=epochs, shuffle=True,
                       validation_data=validation, callbacks=cbs, verbose=0)
        hist.epochs_run = len(hist.history["loss"])
        hist.seconds = time.perf_counter() - t0
        return hist

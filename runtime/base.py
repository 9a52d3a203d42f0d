"""The checked base class every runtime adapter derives from (Polygraphy's ``BaseRunner`` shape).

A runner is constructed cheaply from a path and options, loaded once (``load()`` or
``with``), then :meth:`Runner.predict` validates the inputs against the model's own
metadata (names, rank, shape, dtype, non-empty batch), splits large batches into
chunks, calls the adapter's ``_predict_impl`` per chunk and returns a dict keyed by
output name. Adapters implement only ``_load``, ``_predict_impl`` and ``_close``::

    from edgekit.runtime.registry import open_model
    with open_model("exports/model_fp32.tflite") as runner:
        print(runner.runtime_name, runner.inputs, runner.outputs)
        out = runner.predict(x)          # x: float32 (N, F) array, or {"features": x}
        y = out["output_0"]
        if not out.finite:               # NaN/Inf are computed, never hidden: see Prediction
            print(out.nonfinite_inputs, out.nonfinite_outputs)

Nothing here imports a heavy library; adapters import theirs inside ``_load``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from edgekit.core.errors import EdgekitError, InputError, RuntimeFailure, Unverifiable, UsageError
from edgekit.core.text import one_line
from edgekit.runtime.intermediates import Intermediates, Producer  # noqa: F401  (re-exported)

#: rows per ``_predict_impl`` call when ``predict(batch_size=None)``: bounds peak memory of
#: every runtime's intermediate tensors while keeping per-call overhead negligible.
DEFAULT_CHUNK_ROWS = 4096


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (``None`` = any size) and numpy dtype name of one model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in self.shape))
        object.__setattr__(self, "dtype", str(np.dtype(self.dtype)))

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorInfo":
        try:
            return cls(str(data["name"]), tuple(data["shape"]), str(data["dtype"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError("malformed tensor description", got=dict(data),
                             expected='{"name": str, "shape": [int|null, ...], "dtype": str}') from exc

    def describe(self) -> str:
        dims = ", ".join("None" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


class Prediction(dict):
    """What :meth:`Runner.predict` returns: ``{output name: array}`` (a plain dict) plus flags.

    NaN/Inf inputs are not refused (a runtime computes whatever it computes with them), but
    they are never silent either: some runtimes turn NaN into a finite number (TensorFlow's
    and XNNPack's ``relu`` give ``max(NaN, 0) = 0``), so the output alone cannot tell.

    The counts are computed on first access (a scan of every value costs more than a tiny
    model's whole inference) and describe the input arrays as they were passed.

    Attributes:
        nonfinite_inputs: ``{input name: number of NaN/Inf values}`` for each input holding
            any (empty dict when every input value is finite).
        nonfinite_outputs: the same for the outputs.
    """

    def __init__(self, outputs: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray] | None = None):
        super().__init__(outputs)
        self._inputs = inputs or {}
        self._flags: tuple[dict[str, int], dict[str, int]] | None = None

    def _count(self) -> tuple[dict[str, int], dict[str, int]]:
        if self._flags is None:
            ins = {k: n for k, v in self._inputs.items() if (n := count_nonfinite(v))}
            outs = {k: n for k, v in self.items() if (n := count_nonfinite(v))}
            self._flags, self._inputs = (ins, outs), {}
        return self._flags

    @property
    def nonfinite_inputs(self) -> dict[str, int]:
        return self._count()[0]

    @property
    def nonfinite_outputs(self) -> dict[str, int]:
        return self._count()[1]

    @property
    def finite(self) -> bool:
        """True when no input and no output holds NaN or Inf."""
        ins, outs = self._count()
        return not ins and not outs


def count_nonfinite(arr: np.ndarray, block: int = 1 << 20) -> int:
    """Number of NaN/Inf values in ``arr`` (0 for integer arrays), counted in blocks of
    ``block`` elements (default 2**20) so a huge batch needs no full-size temporary."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fc":
        return 0
    flat = arr.reshape(-1)
    # Fast path (the common case, ~1 us): a finite sum means no NaN/Inf; NaN and Inf propagate
    # through a sum, and a sum that overflows falls through to the exact count.
    if np.isfinite(np.add.reduce(flat)):
        return 0
    return sum(int(min(block, flat.size - i) - np.count_nonzero(np.isfinite(flat[i:i + block])))
               for i in range(0, flat.size, block))


class Runner(abc.ABC):
    """Base of every runtime adapter.

    Subclasses set ``format`` (the registry key), ``OPTIONS`` (option name -> default) and
    implement :meth:`_load` (which must set ``inputs``, ``outputs`` and ``runtime_name``),
    :meth:`_predict_impl` and optionally :meth:`_close`.

    Args:
        path: the model file or directory.
        **options: adapter options; unknown names raise :class:`UsageError`. Every runner
            accepts ``chunk_rows`` (default ``DEFAULT_CHUNK_ROWS`` = 4096): the largest
            batch handed to the runtime in one call.
    """

    format: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, Any]] = {}

    def __init__(self, path: str | Path, **options: Any):
        self.path = Path(path)
        allowed = {"chunk_rows": DEFAULT_CHUNK_ROWS, **self.OPTIONS}
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise UsageError(f"unknown option for the {self.format} runner", got=unknown,
                             expected=sorted(allowed))
        self.options: dict[str, Any] = {**allowed, **options}
        chunk = self.options["chunk_rows"]
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise UsageError("chunk_rows must be a positive integer", got=chunk, expected=">= 1")
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.runtime_name: str = "not loaded"
        #: largest batch the loaded model accepts per call (e.g. a Core ML range bound), or None.
        self.max_batch: int | None = None
        self._loaded = False
        self._spec_cache: tuple[Any, Any] | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def is_loaded(self) -> bool:
        return self._loaded

    def load(self) -> "Runner":
        """Load the model (idempotent) and return ``self``.

        Raises:
            InputError: the path does not exist.
            DependencyError: the runtime is not installed (message says how to install it).
            RuntimeFailure: the runtime could not load the model.
        """
        if self._loaded:
            return self
        if not self.path.exists():
            raise InputError(f"{self.format} model not found", got=str(self.path),
                             expected="an existing file or directory")
        try:
            self._load()
        except EdgekitError:
            self._safe_close()
            raise
        except Exception as exc:
            self._safe_close()
            raise RuntimeFailure(f"{self.format} runtime could not load {self.path}",
                                 got=one_line(exc)) from exc
        if not self.inputs or not self.outputs:
            self._safe_close()
            raise RuntimeFailure(f"{self.format} model declares no inputs or no outputs",
                                 got=f"{len(self.inputs)} inputs, {len(self.outputs)} outputs")
        self._loaded = True
        return self

    def close(self) -> None:
        """Release the runtime's resources (idempotent)."""
        if self._loaded:
            self._loaded = False
            self._close()

    def _safe_close(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - closing after a failed load must not mask the cause
            pass

    def __enter__(self) -> "Runner":
        return self.load()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self.runtime_name if self._loaded else "not loaded"
        return f"{type(self).__name__}({str(self.path)!r}, {state})"

    # ----------------------------------------------------------------- inference
    def predict(self, inputs: np.ndarray | Mapping[str, np.ndarray],
                batch_size: int | None = None) -> Prediction:
        """Run the model on a batch and return ``{output name: array}`` (a :class:`Prediction`).

        NaN/Inf inputs are computed, and counted in ``result.nonfinite_inputs`` (NaN/Inf
        outputs in ``result.nonfinite_outputs``; ``result.finite`` is False if there are any).

        Args:
            inputs: one array (only for single-input models) or a dict keyed by input name.
                Arrays must already have the model's dtype (nothing is cast silently).
            batch_size: rows per runtime call (default None = the ``chunk_rows`` option,
                4096 unless set, capped by the model's ``max_batch``). Chunk outputs are
                concatenated along axis 0.

        Raises:
            UsageError: the runner is not loaded, or batch_size is not a positive integer.
            InputError: names, rank, shape or dtype do not match, or the batch is empty.
            RuntimeFailure: the runtime failed or returned something malformed.
        """
        if not self._loaded:
            raise UsageError(f"{type(self).__name__} is not loaded", got=str(self.path),
                             expected="call load() or use it as a context manager first")
        feeds = self._validate(inputs)
        if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                                       or batch_size < 1):
            raise UsageError("batch_size must be a positive integer", got=batch_size, expected=">= 1")
        chunk = batch_size or self.options["chunk_rows"]
        if self.max_batch:
            chunk = min(chunk, self.max_batch)
        n = next(iter(feeds.values())).shape[0]
        if n <= chunk:
            return Prediction(self._run(feeds), feeds)
        parts: dict[str, list[np.ndarray]] = {o.name: [] for o in self.outputs}
        for start in range(0, n, chunk):
            out = self._run({k: v[start:start + chunk] for k, v in feeds.items()})
            for k, v in out.items():
                parts[k].append(v)
        return Prediction({k: np.concatenate(v, axis=0) for k, v in parts.items()}, feeds)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = next(iter(feeds.values())).shape[0]
        try:
            raw = self._predict_impl(feeds)
        except EdgekitError:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"{self.runtime_name} failed on {self.path.name}",
                                 got=one_line(exc)) from exc
        missing = [o.name for o in self.outputs if o.name not in raw]
        if missing:
            raise RuntimeFailure(f"{self.runtime_name} did not return every output", got=sorted(raw),
                                 expected=[o.name for o in self.outputs])
        result = {}
        for o in self.outputs:
            arr = raw[o.name]
            if type(arr) is not np.ndarray:
                arr = np.asarray(arr)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise RuntimeFailure(f"{self.runtime_name} returned {o.name} with the wrong batch size",
                                     got=arr.shape, expected=f"{n} rows")
            result[o.name] = arr
        return result

    def _specs(self) -> list[tuple]:
        """Per input: (info, accepted dtypes as np.dtype, rank, [(axis, size) fixed]); built once."""
        if self._spec_cache is None or self._spec_cache[0] is not self.inputs:
            specs = [(info, tuple(np.dtype(d) for d in self._accepted_dtypes(info)), len(info.shape),
                      [(i, e) for i, e in enumerate(info.shape) if e is not None]) for info in self.inputs]
            self._spec_cache = (self.inputs, specs)
        return self._spec_cache[1]

    def _validate(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [i.name for i in self.inputs]
        if isinstance(inputs, Mapping):
            unexpected = sorted(set(inputs) - set(names))
            missing = [n for n in names if n not in inputs]
            if unexpected or missing:
                raise InputError(f"input names do not match the {self.format} model "
                                 f"(missing {missing}, unexpected {unexpected})",
                                 got=sorted(map(str, inputs)), expected=names)
            feeds = dict(inputs)
        else:
            if len(names) != 1:
                raise InputError(f"the {self.format} model has {len(names)} inputs: pass a dict",
                                 got=type(inputs).__name__, expected=f"a dict keyed by {names}")
            feeds = {names[0]: inputs}
        batch = None
        for info, accepted, rank, fixed in self._specs():
            arr = feeds[info.name]
            if not isinstance(arr, np.ndarray):
                raise InputError(f"input {info.name!r} is not a numpy array", got=type(arr).__name__,
                                 expected=f"np.ndarray of {info.dtype}")
            if arr.dtype not in accepted:
                raise InputError(f"input {info.name!r} has the wrong dtype (nothing is cast silently)",
                                 got=str(arr.dtype), expected=" or ".join(self._accepted_dtypes(info)))
            if arr.ndim != rank:
                raise InputError(f"input {info.name!r} has the wrong rank", got=f"shape {arr.shape}",
                                 expected=f"rank {len(info.shape)} ({info.describe()})")
            shape = arr.shape
            bad = [i for i, e in fixed if shape[i] != e]
            if bad:
                raise InputError(f"input {info.name!r} has the wrong shape (axis {bad[0]})",
                                 got=tuple(arr.shape), expected=info.describe())
            if arr.shape[0] == 0:
                raise InputError(f"input {info.name!r} is an empty batch", got=tuple(arr.shape),
                                 expected="at least one row")
            if batch is not None and arr.shape[0] != batch:
                raise InputError("inputs have different batch sizes", got=f"{info.name}: {arr.shape[0]}",
                                 expected=f"{batch} rows like the other inputs")
            batch = arr.shape[0]
            if not arr.flags.c_contiguous:
                feeds[info.name] = np.ascontiguousarray(arr)
        return feeds

    def _accepted_dtypes(self, info: TensorInfo) -> tuple[str, ...]:
        """Dtypes ``predict`` accepts for an input (default: exactly the declared one)."""
        return (info.dtype,)

    # ----------------------------------------------------------------- intermediates
    #: True when :meth:`intermediates` can expose the model's internal tensors (``edgekit explain``).
    supports_intermediates: ClassVar[bool] = False

    def intermediates(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> Intermediates:
        """Run one batch and return every internal tensor the runtime computes (for ``edgekit explain``).

        Args:
            inputs: as for :meth:`predict` (validated the same way); run as one batch.

        Returns:
            An :class:`Intermediates`: ``{tensor name: float or integer array}`` in execution order
            (quantized tensors dequantized), with each tensor's producing op.

        Raises:
            Unverifiable: this runtime cannot expose intermediates (``supports_intermediates`` False).
            UsageError, InputError: as for :meth:`predict`.
            RuntimeFailure: the runtime failed.
        """
        if not self.supports_intermediates:
            raise Unverifiable(f"the {self.format} runtime cannot expose intermediate tensors",
                               got=self.runtime_name, expected="a runner with supports_intermediates")
        if not self._loaded:
            raise UsageError(f"{type(self).__name__} is not loaded", got=str(self.path),
                             expected="call load() or use it as a context manager first")
        feeds = self._validate(inputs)
        try:
            return self._intermediates_impl(feeds)
        except EdgekitError:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"{self.runtime_name} failed exposing intermediates of {self.path.name}",
                                 got=one_line(exc)) from exc

    def _intermediates_impl(self, feeds: dict[str, np.ndarray]) -> Intermediates:
        """Adapters with ``supports_intermediates`` implement this (validated feeds, one batch)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- adapter hooks
    @abc.abstractmethod
    def _load(self) -> None:
        """Load the model; set ``inputs``, ``outputs``, ``runtime_name`` (and ``max_batch``)."""

    @abc.abstractmethod
    def _predict_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one validated chunk; return arrays keyed by output name."""

    def _close(self) -> None:
        """Release resources; called at most once per successful load (and after a failed one)."""
        return None


def package_version(dist: str) -> str:
    """Installed version of a distribution, or ``"?"`` (used in ``runtime_name``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"

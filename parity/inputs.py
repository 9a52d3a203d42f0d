"""Golden inputs: a user's ``--inputs FILE.npz``, checked, or inputs synthesised to look like real ones.

Standard-normal rows are what a float model on standardised features sees, not what a text
model (token ids) or a camera model (uint8 pixels) sees. :func:`synthesise` draws, per input:

- ``uint8``: uniform integers 0..255 (pixels); ``int8``: -128..127;
- other integers: uniform ids in ``[lo, hi)`` from ``int_ranges`` (an Embedding's ``input_dim``
  read from the model, or ``--int-range LO,HI``); with neither, it refuses (one line) rather
  than guess;
- ``bool``: fair coin flips;
- floats: normal with the per-element mean and standard deviation of the calibration data when
  given, else standard normal.

Every input's origin is described in one string (``inputs_origin``), which the manifest and every
verify row carry. :func:`load_inputs` reads ``--inputs`` and checks it against the model's inputs:
exact keys, dtype, shape, at least one row, finite floats (one-line errors, expected vs got).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.core.errors import InputError, UsageError
from edgekit.core.text import one_line

GOLDEN_ROWS = 64
GOLDEN_SEED = 0
INPUTS_HOW = "an .npz of arrays keyed by input name, shape (N, ...) and the input's dtype"


def parse_int_range(text: str | tuple | list | None) -> tuple[int, int] | None:
    """``"LO,HI"`` (or a pair) -> ``(lo, hi)``: integer inputs are drawn from ``[lo, hi)``.

    Raises:
        UsageError: not two integers with ``lo < hi``.
    """
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        lo, hi = (int(str(p).strip()) for p in parts)
    except ValueError:
        raise UsageError("--int-range must be two integers LO,HI", got=text, expected="e.g. 0,1000") from None
    if lo >= hi:
        raise UsageError("--int-range needs LO < HI (ids are drawn from [LO, HI))", got=text, expected="e.g. 0,1000")
    return lo, hi


def describe(infos: list[dict]) -> str:
    return ", ".join(f"{i['name']}: {i['dtype']}{tuple(i['shape'])}" for i in infos)


def load_inputs(path: Path, infos: list[dict], what: str = "--inputs") -> dict[str, np.ndarray]:
    """Read and check golden inputs: ``{input name: array}`` in the model's dtypes.

    Args:
        path: an ``.npz`` keyed by input name (an ``.npy`` for a single-input model).
        infos: the model's inputs, ``[{"name", "shape", "dtype"}]`` (batch axis None).
        what: the option name used in messages (default ``"--inputs"``).

    Raises:
        InputError: missing file, unreadable, missing or extra keys, wrong dtype, rank or shape,
            no rows, NaN/Inf, or inputs with different row counts.
    """
    path = Path(path)
    names = [i["name"] for i in infos]
    if not path.is_file():
        raise InputError(f"{what} file does not exist", got=str(path), expected=INPUTS_HOW)
    try:
        if path.suffix == ".npy":
            if len(names) != 1:
                raise InputError(f"{what}: a .npy holds one array but the model has several inputs",
                                 got=str(path), expected=f"an .npz keyed by {names}")
            raw = {names[0]: np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{what} file is unreadable", got=f"{path}: {one_line(exc, 200)}",
                         expected=INPUTS_HOW) from exc
    missing = [n for n in names if n not in raw]
    extra = sorted(set(raw) - set(names))
    if missing or extra:
        raise InputError(f"{what} keys do not match the model's inputs (missing {missing}, extra {extra})",
                         got=sorted(raw), expected=names)
    out, rows = {}, set()
    for info in infos:
        arr, want = raw[info["name"]], np.dtype(info["dtype"])
        if arr.dtype != want:
            raise InputError(f"{what} array {info['name']!r} has the wrong dtype", got=str(arr.dtype),
                             expected=str(want))
        shape = info["shape"]
        if arr.ndim != len(shape) or any(e is not None and e != g for g, e in zip(arr.shape[1:], shape[1:],
                                                                                 strict=True)):
            raise InputError(f"{what} array {info['name']!r} has the wrong shape", got=tuple(arr.shape),
                             expected="(N, " + ", ".join(str(d) for d in shape[1:]) + ")")
        if arr.shape[0] < 1:
            raise InputError(f"{what} array {info['name']!r} has no rows", got=tuple(arr.shape),
                             expected="at least one row")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InputError(f"{what} array {info['name']!r} holds NaN or Inf", got=str(path),
                             expected="finite values")
        rows.add(arr.shape[0])
        out[info["name"]] = np.ascontiguousarray(arr)
    if len(rows) > 1:
        raise InputError(f"{what} arrays have different row counts", got=sorted(rows),
                         expected="one row count for every input")
    return out


def float_stats(calibration: dict[str, np.ndarray] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-element mean and standard deviation of each float calibration array."""
    stats = {}
    for name, arr in (calibration or {}).items():
        if arr.dtype.kind == "f" and len(arr):
            a = arr.astype(np.float64)
            stats[name] = (a.mean(axis=0), a.std(axis=0))
    return stats


def synthesise(infos: list[dict], *, rows: int = GOLDEN_ROWS, seed: int = GOLDEN_SEED,
               int_ranges: dict[str, tuple] | None = None, int_range: tuple[int, int] | None = None,
               stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
               stats_origin: str = "") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Seeded golden inputs shaped like what the model expects.

    Args:
        infos: the model's inputs, ``[{"name", "shape", "dtype"}]``; non-batch dims must be known.
        rows: rows per input (default 64).
        seed: random seed (default 0).
        int_ranges: ``{input name: (lo, hi[, why])}`` read from the model (default None).
        int_range: ``(lo, hi)`` for every integer input, overriding ``int_ranges`` (``--int-range``;
            default None).
        stats: ``{input name: (mean, std)}`` of float calibration data (default None: standard normal).
        stats_origin: where ``stats`` came from, for the description (default "").

    Returns:
        ``({input name: array}, {input name: origin description})``.

    Raises:
        InputError: an integer input with no known range, or a non-batch dimension unknown.
    """
    rng = np.random.default_rng(seed)
    arrays, origin = {}, {}
    for info in infos:
        name, dtype = info["name"], np.dtype(info["dtype"])
        unknown = [ax for ax, d in enumerate(info["shape"]) if ax and d is None]
        if unknown:
            raise InputError(f"input {name!r} has an unknown size on axis {unknown[0]}",
                             got=f"shape {info['shape']}", expected=f"--input-shape {name}=D1xD2...")
        shape = (rows, *[int(d) for d in info["shape"][1:]])
        if dtype == np.bool_:
            arrays[name], origin[name] = rng.random(shape) < 0.5, "bool: fair coin flips"
        elif dtype.kind in "iu" and dtype.itemsize == 1:
            lim = np.iinfo(dtype)
            arrays[name] = rng.integers(lim.min, int(lim.max) + 1, size=shape).astype(dtype)
            origin[name] = f"{dtype.name}: uniform {lim.min}..{lim.max}"
        elif dtype.kind in "iu":
            known = (int_ranges or {}).get(name)
            if int_range is not None:
                lo, hi, why = *int_range, "--int-range"
            elif known is not None:
                lo, hi, why = int(known[0]), int(known[1]), str(known[2]) if len(known) > 2 else "the model"
            else:
                raise InputError(f"integer input {name!r} has no known valid range (no Embedding layer "
                                 "to read it from)",
                                 got=f"{dtype.name}{tuple(info['shape'])}",
                                 expected="--int-range LO,HI (ids drawn from [LO, HI)) or --inputs FILE.npz")
            lim = np.iinfo(dtype)
            if lo < lim.min or hi - 1 > lim.max:
                raise UsageError(f"--int-range does not fit input {name!r}", got=f"[{lo}, {hi})",
                                 expected=f"within {dtype.name} [{lim.min}, {lim.max}]")
            arrays[name] = rng.integers(lo, hi, size=shape).astype(dtype)
            origin[name] = f"{dtype.name}: uniform ids in [{lo}, {hi}) ({why})"
        elif dtype.kind == "f":
            if stats and name in stats:
                mean, std = stats[name]
                arrays[name] = (mean + std * rng.standard_normal(shape)).astype(dtype)
                origin[name] = f"{dtype.name}: normal with the calibration data's per-element mean and std" + \
                    (f" ({stats_origin})" if stats_origin else "")
            else:
                arrays[name] = rng.standard_normal(shape).astype(dtype)
                origin[name] = f"{dtype.name}: standard normal (no calibration data)"
        else:
            raise InputError(f"input {name!r} has a dtype edgekit cannot synthesise", got=dtype.name,
                             expected="float, integer or bool inputs, or --inputs FILE.npz")
    return arrays, origin

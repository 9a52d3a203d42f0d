"""Element-wise comparison of a runtime's outputs with the reference (Keras) outputs.

A comparison returns a result object, never a bare bool (Polygraphy's
``OutputCompareResult`` is the model): per output it holds the max and mean absolute
error, the max relative error, the count of NaN/Inf values, the shape and dtype
checks and the *smallest atol that would have passed* at the given rtol — the number
a user acts on. ``bool(result)`` is the verdict.

The element-wise rule is numpy's ``allclose``::

    |got - expected| <= atol + rtol * |expected|

so the smallest passing atol is ``max(|got - expected| - rtol * |expected|, 0)``. A
policy atol with ``atol_scale="peak"`` (the default) is first multiplied by
``max(1, max |expected|)``: probabilities keep an absolute atol, raw-scale regression
outputs (hundreds) get the same *relative-to-range* bound. NaN or Inf anywhere in either
array always fails; the errors are computed over the positions where both values are
finite (and, with a row mask, over the selected rows only).

:func:`compare_outputs` checks every output and collects every failure before
returning, in this order: names, then shapes and dtypes, then values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from edgekit.parity.tolerance import Tolerance


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if not np.isfinite(x):
        return str(x)
    return f"{x:.3g}"


def _json_float(x: float | None) -> float | None:
    """A float JSON can hold (``None`` for missing, NaN or Inf)."""
    if x is None or not np.isfinite(x):
        return None
    return float(x)


@dataclass(frozen=True)
class OutputCompareResult:
    """The comparison of one named output.

    Attributes:
        name: the output name.
        atol, rtol: the tolerance applied (atol in the output's units).
        expected_shape, got_shape: the arrays' shapes.
        expected_dtype, got_dtype: the arrays' dtypes (as strings).
        max_abs_err, mean_abs_err: absolute error over the finite positions
            (``None`` when the shapes differ or nothing is finite).
        max_rel_err: ``|got - expected| / |expected|`` over finite positions where
            ``expected != 0``; ``inf`` when an error sits where ``expected == 0``.
        required_atol: the smallest atol that would have passed at ``rtol``.
        nonfinite: count of NaN/Inf values in ``got``.
        nonfinite_expected: count of NaN/Inf values in ``expected`` (a broken reference).
        structural: shape/dtype failures.
        value_failures: NaN/Inf and out-of-tolerance failures.
        scale: what the policy's atol was multiplied by (``max(1, peak |expected|)`` for
            ``atol_scale="peak"``, else 1): ``atol`` above is already scaled.
        rows_compared, rows_excluded: rows whose values were compared / left out by a row mask.
    """

    name: str
    atol: float
    rtol: float
    expected_shape: tuple
    got_shape: tuple
    expected_dtype: str
    got_dtype: str
    max_abs_err: float | None
    mean_abs_err: float | None
    max_rel_err: float | None
    required_atol: float | None
    nonfinite: int
    nonfinite_expected: int
    structural: tuple[str, ...] = ()
    value_failures: tuple[str, ...] = ()
    scale: float = 1.0
    rows_compared: int = 0
    rows_excluded: int = 0

    @property
    def failures(self) -> tuple[str, ...]:
        """Every reason this output failed (empty when it passed): structure, then values."""
        return self.structural + self.value_failures

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        """One line: verdict, errors and the smallest atol that would have passed."""
        verdict = "PASS" if self.passed else "FAIL"
        line = (f"{verdict} {self.name}: max abs {_fmt(self.max_abs_err)}, mean abs "
                f"{_fmt(self.mean_abs_err)}, max rel {_fmt(self.max_rel_err)}; "
                f"atol {_fmt(self.atol)} rtol {_fmt(self.rtol)}; would pass at atol >= "
                f"{_fmt(self.required_atol)}")
        if self.failures:
            line += " [" + "; ".join(self.failures) + "]"
        return line

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "atol": self.atol, "rtol": self.rtol,
                "expected_shape": list(self.expected_shape), "got_shape": list(self.got_shape),
                "expected_dtype": self.expected_dtype, "got_dtype": self.got_dtype,
                "max_abs_err": _json_float(self.max_abs_err),
                "mean_abs_err": _json_float(self.mean_abs_err),
                "max_rel_err": _json_float(self.max_rel_err),
                "required_atol": _json_float(self.required_atol),
                "nonfinite": self.nonfinite, "nonfinite_expected": self.nonfinite_expected,
                "scale": self.scale, "rows_compared": self.rows_compared,
                "rows_excluded": self.rows_excluded, "failures": list(self.failures)}


def compare_output(name: str, got: np.ndarray, expected: np.ndarray, tolerance: Tolerance,
                   check_dtype: bool = True, rows: np.ndarray | None = None) -> OutputCompareResult:
    """Compare one output array with its reference.

    Args:
        name: the output name (used in messages).
        got: the runtime's output.
        expected: the reference output.
        tolerance: the atol/rtol to apply; with ``atol_scale="peak"`` the absolute tolerance
            is ``atol * max(1, max |expected|)`` over the compared values.
        check_dtype: require ``got.dtype == expected.dtype`` (default True).
        rows: boolean mask over axis 0 selecting the rows whose values are compared
            (default None: every row). Shapes, dtypes and NaN/Inf are checked on every row.

    Returns:
        An :class:`OutputCompareResult`; ``bool()`` of it is the verdict.
    """
    got = np.asarray(got)
    expected = np.asarray(expected)
    rtol = float(tolerance.rtol)
    failures: list[str] = []
    values: list[str] = []
    if got.shape != expected.shape:
        failures.append(f"{name}: shape {tuple(got.shape)} != expected {tuple(expected.shape)}")
    if check_dtype and got.dtype != expected.dtype:
        failures.append(f"{name}: dtype {got.dtype} != expected {expected.dtype}")
    numeric = got.dtype.kind in "fiub" and expected.dtype.kind in "fiub"
    if not numeric:
        failures.append(f"{name}: non-numeric dtype {got.dtype}")
    nonfinite = int(np.size(got) - np.count_nonzero(np.isfinite(got))) if numeric else 0
    nonfinite_exp = int(np.size(expected) - np.count_nonzero(np.isfinite(expected))) if numeric else 0
    if nonfinite:
        values.append(f"{name}: {nonfinite} NaN/Inf value(s) in the output")
    if nonfinite_exp:
        values.append(f"{name}: {nonfinite_exp} NaN/Inf value(s) in the reference")
    max_abs = mean_abs = max_rel = required = None
    scale = 1.0
    n_rows = int(expected.shape[0]) if expected.ndim else 1
    compared = n_rows
    if got.shape == expected.shape and numeric:
        g = got.astype(np.float64)
        e = expected.astype(np.float64)
        keep = np.isfinite(g) & np.isfinite(e)
        if rows is not None and expected.ndim:
            sel = np.asarray(rows, bool).reshape((n_rows,) + (1,) * (expected.ndim - 1))
            keep &= sel
            compared = int(np.count_nonzero(rows))
        if keep.any():
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.where(keep, np.abs(g - e), 0.0)
            ref = np.where(keep, np.abs(e), 0.0)
            if tolerance.atol_scale == "peak":
                scale = max(1.0, float(ref.max()))
            max_abs = float(diff.max())
            mean_abs = float(diff[keep].mean())
            nz = keep & (ref > 0)
            max_rel = float((diff[nz] / ref[nz]).max()) if nz.any() else 0.0
            if np.any(diff[keep & (ref == 0)] > 0):
                max_rel = float("inf")
            excess = np.where(keep, diff - rtol * ref, -np.inf)
            required = float(max(excess.max(), 0.0))
            if required > tolerance.atol * scale:
                worst = int(np.argmax(excess))
                values.append(f"{name}: max abs err {_fmt(max_abs)} exceeds tolerance (atol "
                              f"{_fmt(tolerance.atol * scale)}, rtol {_fmt(rtol)}; worst at flat index "
                              f"{worst}); would pass at atol >= {_fmt(required)}")
    return OutputCompareResult(name, float(tolerance.atol) * scale, rtol, tuple(expected.shape),
                               tuple(got.shape), str(expected.dtype), str(got.dtype), max_abs, mean_abs,
                               max_rel, required, nonfinite, nonfinite_exp, tuple(failures), tuple(values),
                               scale, compared, n_rows - compared)


@dataclass(frozen=True)
class CompareResult:
    """The comparison of every output of one run.

    Attributes:
        outputs: per-output results, in the reference's order (outputs present in both).
        missing: output names the reference has and the runtime did not return.
        unexpected: output names the runtime returned and the reference lacks.
        failures: every failure, names first, then shapes/dtypes, then values.
    """

    outputs: tuple[OutputCompareResult, ...]
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    failures: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def __getitem__(self, name: str) -> OutputCompareResult:
        for r in self.outputs:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def max_abs_err(self) -> float | None:
        vals = [r.max_abs_err for r in self.outputs if r.max_abs_err is not None]
        return max(vals) if vals else None

    @property
    def required_atol(self) -> float | None:
        vals = [r.required_atol for r in self.outputs if r.required_atol is not None]
        return max(vals) if vals else None

    def summary(self) -> str:
        """One line: the verdict, the worst error, and the first failure if any."""
        verdict = "PASS" if self.passed else "FAIL"
        line = (f"{verdict}: {len(self.outputs)} output(s), max abs err {_fmt(self.max_abs_err)}, "
                f"would pass at atol >= {_fmt(self.required_atol)}")
        if self.failures:
            more = f" (+{len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            line += f"; {self.failures[0]}{more}"
        return line

    def to_dict(self) -> dict:
        return {"passed": self.passed, "missing": list(self.missing),
                "unexpected": list(self.unexpected), "failures": list(self.failures),
                "outputs": [r.to_dict() for r in self.outputs]}


def compare_outputs(got: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                    tolerances: Mapping[str, Tolerance] | Tolerance,
                    check_dtype: bool = True, rows: np.ndarray | None = None) -> CompareResult:
    """Compare every output, collecting all failures (names, then shapes/dtypes, then values).

    Args:
        got: the runtime's outputs keyed by name.
        expected: the reference outputs keyed by name.
        tolerances: one :class:`Tolerance` for all outputs, or a mapping from output name to
            tolerance (a ``""`` key is the default for names not listed).
        check_dtype: require equal dtypes (default True).
        rows: boolean mask over axis 0: rows whose values are compared (default None: all).

    Returns:
        A :class:`CompareResult`.
    """
    missing = tuple(n for n in expected if n not in got)
    unexpected = tuple(n for n in got if n not in expected)
    results = []
    for name in expected:
        if name in got:
            results.append(compare_output(name, got[name], expected[name],
                                          _tolerance_for(tolerances, name), check_dtype, rows))
    names = [f"missing output {n!r} (runtime returned {sorted(got)})" for n in missing]
    names += [f"unexpected output {n!r} (reference has {sorted(expected)})" for n in unexpected]
    structural = [f for r in results for f in r.structural]
    values = [f for r in results for f in r.value_failures]
    return CompareResult(tuple(results), missing, unexpected, tuple(names + structural + values))


def _tolerance_for(tolerances: Mapping[str, Tolerance] | Tolerance, name: str) -> Tolerance:
    if isinstance(tolerances, Tolerance):
        return tolerances
    if name in tolerances:
        return tolerances[name]
    if "" in tolerances:
        return tolerances[""]
    raise KeyError(f"no tolerance for output {name!r} and no '' default")

"""Property-based tests (hypothesis) of the comparison functions (``edgekit.parity.compare``) and of
``Runner.predict``'s input validation on real runtimes.

Comparison: the reported smallest passing atol passes and the next float below it fails;
NaN/Inf anywhere fails; errors are symmetric in (got, expected) and scale with the data;
peak scaling makes the verdict scale-free. Validation: a random array (dtype, rank, shape,
memory layout) is accepted exactly when it matches the model's metadata, and otherwise
rejected with an :class:`InputError` naming what was got and what was expected — never any
other exception type.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgekit.core.errors import EdgekitError, InputError
from edgekit.parity.compare import compare_output, compare_outputs
from edgekit.parity.tolerance import Tolerance

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)


@st.composite
def pairs(draw, dtype=np.float32):
    shape = draw(shapes)
    a = draw(hnp.arrays(dtype, shape, elements=finite))
    b = draw(hnp.arrays(dtype, shape, elements=finite))
    return a, b


@SETTINGS
@given(pairs(), st.floats(0, 0.5))
def test_required_atol_passes_and_anything_smaller_fails(ab, rtol):
    got, exp = ab
    r = compare_output("y", got, exp, Tolerance(atol=1.0, rtol=rtol, atol_scale="abs"))
    req = r.required_atol
    assert req is not None and req >= 0
    assert compare_output("y", got, exp, Tolerance(atol=req, rtol=rtol, atol_scale="abs")).passed
    if req > 0:
        below = float(np.nextafter(req, 0))
        assert not compare_output("y", got, exp, Tolerance(atol=below, rtol=rtol, atol_scale="abs")).passed
    # numpy's allclose is the element-wise rule the docstring promises
    assert np.allclose(got.astype(np.float64), exp.astype(np.float64), rtol=rtol, atol=req * (1 + 1e-12) + 1e-300)


@SETTINGS
@given(pairs())
def test_peak_scaled_verdict_is_consistent_with_required_atol(ab):
    got, exp = ab
    r = compare_output("y", got, exp, Tolerance(atol=0.0))
    scale = max(1.0, float(np.abs(exp.astype(np.float64)).max()))
    assert r.scale == scale
    if r.required_atol > 0:
        assert compare_output("y", got, exp, Tolerance(atol=r.required_atol / scale * (1 + 1e-9))).passed
        assert not compare_output("y", got, exp, Tolerance(atol=r.required_atol / scale * (1 - 1e-6))).passed


@SETTINGS
@given(pairs(), st.sampled_from([np.nan, np.inf, -np.inf]), st.data(), st.booleans())
def test_nan_or_inf_always_fails(ab, bad, data, in_got):
    got, exp = (a.copy() for a in ab)
    target = got if in_got else exp
    idx = tuple(data.draw(st.integers(0, s - 1)) for s in target.shape)
    target[idx] = bad
    huge = Tolerance(atol=1e30, rtol=1e30, atol_scale="abs")
    r = compare_output("y", got, exp, huge)
    assert not r.passed
    assert (r.nonfinite if in_got else r.nonfinite_expected) == 1
    assert "NaN/Inf" in " ".join(r.failures)
    assert not compare_outputs({"y": got}, {"y": exp}, huge).passed


@SETTINGS
@given(pairs())
def test_absolute_error_is_symmetric_and_self_comparison_is_exact(ab):
    a, b = ab
    tol = Tolerance(atol=1e-3, atol_scale="abs")
    ab_r, ba_r = compare_output("y", a, b, tol), compare_output("y", b, a, tol)
    assert ab_r.max_abs_err == ba_r.max_abs_err and ab_r.mean_abs_err == ba_r.mean_abs_err
    assert ab_r.required_atol == ba_r.required_atol  # rtol = 0: the rule is symmetric
    assert ab_r.passed == ba_r.passed
    same = compare_output("y", a, a.copy(), Tolerance(atol=0.0, atol_scale="abs"))
    assert same.passed and same.max_abs_err == 0 and same.required_atol == 0


@SETTINGS
@given(pairs(np.float64), st.integers(-8, 8))
def test_errors_scale_with_the_data_and_peak_verdict_is_scale_free(ab, k):
    a, b = ab
    c = 2.0 ** k  # a power of two: scaling is exact in floating point
    r1 = compare_output("y", a, b, Tolerance(atol=1e-3, atol_scale="abs"))
    r2 = compare_output("y", a * c, b * c, Tolerance(atol=1e-3, atol_scale="abs"))
    assert r2.max_abs_err == r1.max_abs_err * c and r2.required_atol == r1.required_atol * c
    assert r2.max_rel_err == r1.max_rel_err
    # with peak scaling the verdict does not depend on the unit once the peak exceeds 1
    big = float(np.abs(b).max())
    if big >= 1 and k >= 0:
        p1 = compare_output("y", a, b, Tolerance(atol=1e-2))
        p2 = compare_output("y", a * c, b * c, Tolerance(atol=1e-2))
        assert p1.passed == p2.passed


@SETTINGS
@given(pairs(), shapes)
def test_shape_mismatch_fails_without_an_exception(ab, other):
    got, exp = ab
    wrong = np.zeros(other, np.float32)
    r = compare_output("y", wrong, exp, Tolerance(atol=1e9, atol_scale="abs"))
    assert r.passed == (other == exp.shape)


# ------------------------------------------------------------------ predict's input validation
DTYPES = ["float32", "float64", "float16", "int32", "int64", "uint8", "bool", ">f4", "complex64"]


@pytest.fixture(scope="module")
def runners(robust_example):
    from edgekit.runtime.registry import open_model

    art = {"tflite": "tflite/model_fp32.tflite", "onnx": "onnx/model_fp32.onnx", "tfjs": "tfjs/fp32"}
    opened = {k: open_model(robust_example / "exports" / v) for k, v in art.items()}
    yield opened
    for r in opened.values():
        r.close()


@st.composite
def arrays(draw):
    rank = draw(st.integers(0, 4))
    shape = tuple(draw(st.sampled_from([0, 1, 2, 3, 7, 10, 11])) for _ in range(rank))
    if draw(st.booleans()) and rank == 2:
        shape = (draw(st.integers(0, 40)), 10)  # often the right shape, to reach acceptance
    dtype = np.dtype(draw(st.sampled_from(["float32"] * 4 + DTYPES)))
    x = (np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=shape) * 3).astype(dtype)
    layout = draw(st.sampled_from(["c", "fortran", "strided"]))
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "strided" and rank >= 1:
        x = np.repeat(x, 2, axis=0)[::2]
    return x


@pytest.mark.parametrize("fmt", ["tflite", "onnx", "tfjs"])
@SETTINGS
@given(x=arrays())
def test_predict_accepts_exactly_the_matching_arrays(fmt, runners, x):
    r = runners[fmt]
    (info,) = r.inputs
    matches = (str(x.dtype) == info.dtype and x.ndim == len(info.shape) and x.shape[0] >= 1
               and all(e is None or e == g for g, e in zip(x.shape, info.shape, strict=True)))
    try:
        out = r.predict(x)
    except InputError as exc:
        assert not matches, f"matching array refused: {exc}"
        msg = str(exc)
        assert "\n" not in msg and "got:" in msg and "expected:" in msg, msg
        return
    except EdgekitError as exc:  # pragma: no cover - the property's failure message
        pytest.fail(f"{type(exc).__name__} instead of InputError: {exc}")
    assert matches, f"non-matching array accepted: {x.dtype} {x.shape}"
    y = out["output_0"]
    assert y.shape == (x.shape[0], 1) and y.dtype == np.float32
    assert out.finite == bool(np.isfinite(x).all())

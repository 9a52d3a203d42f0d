"""Comparison results, checked against values computed by hand."""

import numpy as np
import pytest

from edgekit.parity.compare import compare_output, compare_outputs
from edgekit.parity.tolerance import Tolerance

EXPECTED = np.array([1.0, -2.0, 0.5, 4.0])
GOT = np.array([1.1, -2.0, 0.55, 3.6])
# |diff| = [0.1, 0, 0.05, 0.4]; |diff|/|expected| = [0.1, 0, 0.1, 0.1]
# smallest atol at rtol=0.05: max(|diff| - 0.05*|expected|) = max(0.05, -0.1, 0.025, 0.2) = 0.2


def test_errors_match_hand_computed_values():
    r = compare_output("y", GOT, EXPECTED, Tolerance(atol=0.21, rtol=0.05, atol_scale="abs"))
    assert r.max_abs_err == pytest.approx(0.4)
    assert r.mean_abs_err == pytest.approx(0.55 / 4)
    assert r.max_rel_err == pytest.approx(0.1)
    assert r.required_atol == pytest.approx(0.2)
    assert r.nonfinite == 0
    assert bool(r) and r.passed and r.failures == ()
    assert "would pass at atol >= 0.2" in r.summary()
    assert r.summary().startswith("PASS y:")


def test_fails_just_below_the_required_atol_and_says_what_would_pass():
    r = compare_output("y", GOT, EXPECTED, Tolerance(atol=0.19, rtol=0.05, atol_scale="abs"))
    assert not r
    assert len(r.failures) == 1
    assert "would pass at atol >= 0.2" in r.failures[0]
    assert "flat index 3" in r.failures[0]
    assert r.summary().startswith("FAIL y:")


def test_rtol_zero_required_atol_is_the_max_abs_error():
    r = compare_output("y", GOT, EXPECTED, Tolerance(atol=0.0))
    assert r.required_atol == pytest.approx(0.4)
    assert not r


def test_peak_scaled_atol_multiplies_by_the_largest_reference_magnitude():
    # peak |expected| = 4, so a policy atol of 0.06 means 0.24 in output units (rtol 0.05 -> need 0.2)
    r = compare_output("y", GOT, EXPECTED, Tolerance(atol=0.06, rtol=0.05))
    assert r and r.scale == 4.0 and r.atol == pytest.approx(0.24)
    assert not compare_output("y", GOT, EXPECTED, Tolerance(atol=0.049, rtol=0.05))
    # below 1 the scale stays 1: probabilities keep an absolute atol
    small = compare_output("p", np.array([0.2, 0.51]), np.array([0.2, 0.5]), Tolerance(atol=0.011))
    assert small and small.scale == 1.0 and small.atol == 0.011


def test_row_mask_limits_value_checks_but_not_nan_checks():
    got = np.array([[1.0], [9.0], [3.0]])
    exp = np.array([[1.0], [2.0], [3.0]])
    rows = np.array([True, False, True])
    r = compare_output("y", got, exp, Tolerance(atol=0.0), rows=rows)
    assert r and r.max_abs_err == 0 and r.rows_compared == 2 and r.rows_excluded == 1
    assert not compare_output("y", got, exp, Tolerance(atol=0.0))
    bad = compare_output("y", np.array([[1.0], [np.nan], [3.0]]), exp, Tolerance(atol=0.0), rows=rows)
    assert not bad and bad.nonfinite == 1


def test_exact_match_passes_at_zero_tolerance():
    r = compare_output("y", EXPECTED.copy(), EXPECTED, Tolerance(atol=0.0))
    assert r and r.max_abs_err == 0 and r.required_atol == 0 and r.max_rel_err == 0


def test_error_where_reference_is_zero_has_infinite_relative_error():
    r = compare_output("y", np.array([0.0, 1.0]), np.array([0.0, 1.0]), Tolerance(atol=0.0))
    assert r.max_rel_err == 0.0 and r
    r = compare_output("y", np.array([0.5, 1.0]), np.array([0.0, 1.0]), Tolerance(atol=1.0))
    assert r.max_rel_err == float("inf") and r.max_abs_err == pytest.approx(0.5)
    assert r.to_dict()["max_rel_err"] is None  # JSON cannot hold inf


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_always_fail_even_with_huge_tolerance(bad):
    got = np.array([1.0, bad, 3.0], np.float32)
    exp = np.array([1.0, 2.0, 3.5], np.float32)
    r = compare_output("y", got, exp, Tolerance(atol=1e9, rtol=1e9))
    assert not r
    assert r.nonfinite == 1
    assert r.max_abs_err == pytest.approx(0.5)  # over the finite positions only
    assert any("NaN/Inf" in f for f in r.failures)


def test_nan_in_reference_fails():
    r = compare_output("y", np.zeros(2, np.float32), np.array([0, np.nan], np.float32), Tolerance(atol=1))
    assert not r and r.nonfinite_expected == 1


def test_shape_mismatch_fails_without_value_errors():
    r = compare_output("y", np.zeros((4, 1), np.float32), np.zeros((4, 2), np.float32), Tolerance(atol=1))
    assert not r
    assert r.max_abs_err is None and r.required_atol is None
    assert r.failures == ("y: shape (4, 1) != expected (4, 2)",)


def test_dtype_mismatch_fails_unless_disabled():
    got, exp = np.zeros(3, np.float64), np.zeros(3, np.float32)
    r = compare_output("y", got, exp, Tolerance(atol=0))
    assert not r and "dtype float64 != expected float32" in r.failures[0]
    assert compare_output("y", got, exp, Tolerance(atol=0), check_dtype=False)


def test_overall_result_collects_names_then_shapes_then_values():
    expected = {"a": np.zeros(3, np.float32), "b": np.zeros(3, np.float32),
                "c": np.zeros((3, 2), np.float32), "d": np.ones(3, np.float32)}
    got = {"a": np.full(3, 0.5, np.float32), "c": np.zeros((3, 1), np.float32),
           "d": np.ones(3, np.float32), "z": np.zeros(3, np.float32)}
    r = compare_outputs(got, expected, {"": Tolerance(atol=1e-3), "a": Tolerance(atol=0.1)})
    assert not r
    assert r.missing == ("b",) and r.unexpected == ("z",)
    assert [o.name for o in r.outputs] == ["a", "c", "d"]
    f = r.failures
    assert len(f) == 4
    assert f[0].startswith("missing output 'b'")
    assert f[1].startswith("unexpected output 'z'")
    assert f[2].startswith("c: shape")
    assert f[3].startswith("a: max abs err 0.5 exceeds tolerance")
    assert r["a"].atol == 0.1 and r["d"].atol == 1e-3
    assert r["d"] and not r["a"]
    assert r.max_abs_err == pytest.approx(0.5)
    assert r.summary().startswith("FAIL: 3 output(s)") and "(+3 more)" in r.summary()


def test_overall_pass_and_single_tolerance():
    exp = {"y": np.array([[0.25], [0.75]], np.float32)}
    got = {"y": np.array([[0.25], [0.7501]], np.float32)}
    r = compare_outputs(got, exp, Tolerance(atol=2e-4))
    assert r and r.failures == ()
    assert r.max_abs_err == pytest.approx(1e-4, rel=1e-3)
    assert r.to_dict()["passed"] is True


def test_missing_default_tolerance_is_an_error():
    with pytest.raises(KeyError, match="no tolerance for output 'y'"):
        compare_outputs({"y": np.zeros(1)}, {"y": np.zeros(1)}, {"x": Tolerance(atol=0)})

"""Full-length training of the gates and the five-point regression meets the quality bars (slow)."""

from __future__ import annotations

import json

import pytest

from edgekit.train.registry import select
from edgekit.train.runner import train_examples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    train_examples(select(["and_gate", "or_gate", "linear_regression"]), out, log=lambda *a: None)
    return out


@pytest.mark.parametrize("gate", ["and_gate", "or_gate"])
def test_gate_learns_with_margin(full, gate):
    m = json.loads((full / gate / "metrics.json").read_text())
    assert m["metrics"]["accuracy"] == 1.0
    assert m["metrics"]["min_margin"] >= 0.3, m["predictions"]


def test_linear_regression_matches_lstsq(full):
    m = json.loads((full / "linear_regression" / "metrics.json").read_text())["metrics"]
    assert abs(m["lstsq_slope"] - 0.7) < 1e-6 and abs(m["lstsq_intercept"] - 0.7) < 1e-6
    assert m["slope_error"] < 0.02 and m["intercept_error"] < 0.02

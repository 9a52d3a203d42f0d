"""The tolerance policy: one table, looked up by (format, precision), overridable per output."""

import pytest

from edgekit.core.errors import UsageError
from edgekit.parity import tolerance
from edgekit.parity.tolerance import POLICY, Tolerance, lookup, tolerances_for

# The shared vocabulary (briefs/common.md): every exported variant must have a policy entry.
VARIANTS = {"tflite": ("fp32", "fp16", "int8_dynamic", "int8"), "coreml": ("fp32", "fp16"),
            "tfjs": ("fp32", "fp16", "uint8"), "onnx": ("fp32", "int8_dynamic")}


@pytest.mark.parametrize("fmt,precision", [(f, p) for f, ps in VARIANTS.items() for p in ps])
def test_every_variant_has_a_default_entry(fmt, precision):
    entry = POLICY[(fmt, precision)]
    assert "" in entry
    t = lookup(fmt, precision)
    assert isinstance(t, Tolerance) and t.atol > 0 and t.max_metric_drop is not None


def test_fp32_is_tighter_than_fp16_is_tighter_than_int8():
    for fmt in ("tflite", "coreml", "tfjs"):
        assert lookup(fmt, "fp32").atol < lookup(fmt, "fp16").atol
    assert lookup("tflite", "fp16").atol < lookup("tflite", "int8").atol
    assert lookup("onnx", "fp32").atol < lookup("onnx", "int8_dynamic").atol
    assert lookup("tfjs", "fp16").atol < lookup("tfjs", "uint8").atol


def test_unknown_variant_is_refused_with_the_known_list():
    with pytest.raises(UsageError, match="no tolerance policy.*got: tflite/fp8.*onnx/fp32"):
        lookup("tflite", "fp8")


def test_unknown_output_name_falls_back_to_the_default():
    assert lookup("onnx", "fp32", "whatever") == lookup("onnx", "fp32")


def test_policy_entry_per_output_name():
    policy = {("onnx", "fp32"): {"": Tolerance(1e-5), "logits": Tolerance(1e-3, 1e-3)}}
    assert lookup("onnx", "fp32", "logits", policy=policy) == Tolerance(1e-3, 1e-3)
    assert lookup("onnx", "fp32", "probs", policy=policy) == Tolerance(1e-5)


def test_overrides_replace_or_patch_fields():
    base = lookup("tflite", "fp16")
    over = {("tflite", "fp16"): {"": {"atol": 0.5}, "output_1": Tolerance(atol=2.0, rtol=0.0)}}
    t0 = lookup("tflite", "fp16", "output_0", overrides=over)
    assert t0.atol == 0.5 and t0.rtol == base.rtol and t0.max_metric_drop == base.max_metric_drop
    assert lookup("tflite", "fp16", "output_1", overrides=over) == Tolerance(atol=2.0, rtol=0.0)
    assert lookup("tflite", "fp32", overrides=over) == lookup("tflite", "fp32")  # other keys untouched
    tols = tolerances_for("tflite", "fp16", ["output_0", "output_1"], overrides=over)
    assert tols[""].atol == 0.5 and tols["output_1"].atol == 2.0


def test_bad_override_field_and_bad_values_are_refused():
    with pytest.raises(UsageError, match="unknown tolerance field"):
        lookup("onnx", "fp32", overrides={("onnx", "fp32"): {"": {"atl": 1.0}}})
    with pytest.raises(UsageError, match="atol must be a number >= 0"):
        Tolerance(atol=-1.0)
    with pytest.raises(UsageError, match="max_metric_drop"):
        Tolerance(atol=1.0, max_metric_drop=float("nan"))


def test_table_lists_every_entry():
    rows = tolerance.table()
    assert len(rows) == sum(len(e) for e in POLICY.values())
    assert {"format", "precision", "output", "atol", "rtol", "max_metric_drop"} <= set(rows[0])

"""The parity tolerance policy: data in one place, keyed by (format, precision).

Each entry maps an output name to a :class:`Tolerance`; the ``""`` key is the
default for every output not named (Polygraphy's convention). A variant passes when
every output satisfies ``|got - keras| <= atol + rtol * |keras|`` element-wise, holds
no NaN/Inf, and its task metric (accuracy or R², computed on the labelled golden rows)
is no more than ``max_metric_drop`` below the Keras model's.

Metric drops are in the metric's own unit: accuracy as a fraction (0.02 = two
accuracy points), R² as is.

CALIBRATION is filled in below with the figures it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from edgekit.errors import UsageError


@dataclass(frozen=True)
class Tolerance:
    """How close a format's outputs must be to the Keras outputs.

    Attributes:
        atol: absolute tolerance.
        rtol: relative tolerance, times ``|keras output|`` (default 0.0).
        max_metric_drop: largest allowed drop of the task metric, Keras minus format
            (default None: the metric is reported but not judged).
    """

    atol: float
    rtol: float = 0.0
    max_metric_drop: float | None = None

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0 or v != v:
                raise UsageError(f"tolerance {name} must be a number >= 0", got=v, expected=">= 0")
        m = self.max_metric_drop
        if m is not None and (not isinstance(m, (int, float)) or m < 0 or m != m):
            raise UsageError("tolerance max_metric_drop must be a number >= 0 or None", got=m)


T = Tolerance

# (format, precision) -> {output name or "" (default): Tolerance}
POLICY: dict[tuple[str, str], dict[str, Tolerance]] = {
    ("tflite", "fp32"): {"": T(atol=1e-5, rtol=1e-5, max_metric_drop=0.0)},
    ("tflite", "fp16"): {"": T(atol=1e-2, rtol=1e-2, max_metric_drop=0.02)},
    ("tflite", "int8_dynamic"): {"": T(atol=1e-1, rtol=1e-1, max_metric_drop=0.05)},
    ("tflite", "int8"): {"": T(atol=0.25, rtol=0.25, max_metric_drop=0.05)},
    ("onnx", "fp32"): {"": T(atol=1e-5, rtol=1e-5, max_metric_drop=0.0)},
    ("onnx", "int8_dynamic"): {"": T(atol=1e-1, rtol=1e-1, max_metric_drop=0.05)},
    ("coreml", "fp32"): {"": T(atol=1e-5, rtol=1e-5, max_metric_drop=0.0)},
    ("coreml", "fp16"): {"": T(atol=1e-2, rtol=1e-2, max_metric_drop=0.02)},
    ("tfjs", "fp32"): {"": T(atol=1e-5, rtol=1e-5, max_metric_drop=0.0)},
    ("tfjs", "fp16"): {"": T(atol=1e-2, rtol=1e-2, max_metric_drop=0.02)},
    ("tfjs", "uint8"): {"": T(atol=1e-1, rtol=1e-1, max_metric_drop=0.05)},
}

Overrides = Mapping[tuple[str, str], Mapping[str, Tolerance | Mapping[str, float]]]


def lookup(fmt: str, precision: str, output: str = "", overrides: Overrides | None = None,
           policy: Mapping[tuple[str, str], Mapping[str, Tolerance]] = POLICY) -> Tolerance:
    """Return the tolerance for one output of one (format, precision).

    Args:
        fmt: the format (``tflite``, ``onnx``, ``coreml``, ``tfjs``).
        precision: the precision name (e.g. ``fp16``).
        output: the output name (default ``""``: the default entry).
        overrides: ``{(format, precision): {output or "": Tolerance or {field: value}}}``;
            a dict of fields changes only those fields of the policy's tolerance
            (default none).
        policy: the base policy (default :data:`POLICY`).

    Raises:
        UsageError: no policy entry for ``(fmt, precision)``.
    """
    key = (fmt, precision)
    if key not in policy:
        known = ", ".join(f"{f}/{p}" for f, p in sorted(policy))
        raise UsageError("no tolerance policy for this format/precision", got=f"{fmt}/{precision}",
                         expected=f"one of {known}")
    entry = policy[key]
    tol = entry.get(output, entry[""])
    over = (overrides or {}).get(key, {})
    for name in ("", output) if output else ("",):
        if name in over:
            o = over[name]
            if isinstance(o, Tolerance):
                tol = o
                continue
            bad = sorted(set(dict(o)) - {"atol", "rtol", "max_metric_drop"})
            if bad:
                raise UsageError("unknown tolerance field", got=bad,
                                 expected="atol, rtol, max_metric_drop")
            tol = replace(tol, **dict(o))
    return tol


def tolerances_for(fmt: str, precision: str, outputs: list[str],
                   overrides: Overrides | None = None) -> dict[str, Tolerance]:
    """Return ``{"": default, name: tolerance, ...}`` for every output name given."""
    result = {"": lookup(fmt, precision, "", overrides)}
    for name in outputs:
        result[name] = lookup(fmt, precision, name, overrides)
    return result


def table() -> list[dict]:
    """The policy as rows (format, precision, output, atol, rtol, max_metric_drop), for docs."""
    return [{"format": f, "precision": p, "output": o or "*", "atol": t.atol, "rtol": t.rtol,
             "max_metric_drop": t.max_metric_drop}
            for (f, p), entry in POLICY.items() for o, t in entry.items()]

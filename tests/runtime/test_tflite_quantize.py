"""The TFLite adapter's float -> integer input path: LiteRT's reference QUANTIZE kernel in a one-op
interpreter (:class:`edgekit.runtime.tflite_quant.Quantizer`) must give the ints of the reference formula
(:func:`edgekit.runtime.tflite.quantize`) bit for bit, and that formula must be ``std::round``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit.core.errors import InputError
from edgekit.runtime.registry import open_model
from edgekit.runtime.tflite import TFLiteRunner, interpreter_class, quantize
from edgekit.runtime.tflite_quant import _QUANT_LIMIT, Quantizer

pytest.importorskip("ai_edge_litert", reason="the fast path needs ai-edge-litert's schema and BUILTIN_REF")

#: (scale, zero point, dtype): the adapters' real parameters (MobileNetV2's input, a 0-255 image, softmax-like)
#: and awkward ones (scale > 1, uint8 mid zero point, int16).
PARAMS = [(0.007843130268156528, -1, "int8"), (1 / 255, -128, "int8"), (0.1, 0, "int8"), (3.7, 5, "int8"),
          (0.02, 128, "uint8"), (1.0, 0, "uint8"), (0.0123, 0, "int16")]


def _edge_values(scale: float, zero_point: int, dtype: str, rng) -> np.ndarray:
    """.5 ties over the whole integer range (and past the clip bounds), their float32 neighbours,
    the integers, ±0, ±0.49999997 (the float just below one half), huge values, ±inf, random rows."""
    info = np.iinfo(dtype)
    k = np.arange(info.min - zero_point - 3, info.max - zero_point + 4, dtype=np.float64)
    ties = ((k + 0.5) * scale).astype(np.float32)
    special = np.float32([0.0, -0.0, 0.49999997 * scale, -0.49999997 * scale, 1e30, -1e30, np.inf, -np.inf,
                          scale * _QUANT_LIMIT * 4, info.max * scale * 1e3, info.min * scale * 1e3])
    noise = (rng.standard_normal(1 << 16) * scale * info.max * 1.3).astype(np.float32)
    return np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf)),
                           (k * scale).astype(np.float32), special, noise])


def _std_round_reference(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> list[int]:
    """TFLite's reference kernel spelled out in plain Python: ``v = float32(x / float32(scale))``,
    ``std::round`` (half away from zero), ``+ zero_point``, clamp."""
    info = np.iinfo(dtype)
    out = []
    for v in (x.astype(np.float32) / np.float32(scale)).tolist():  # float32 quotients, held as exact doubles
        r = math.copysign(math.floor(abs(v) + 0.5), v) if math.isfinite(v) else v
        out.append(int(min(max(r + zero_point, info.min), info.max)))
    return out


@pytest.mark.parametrize("scale,zero_point,dtype", PARAMS)
def test_reference_formula_is_std_round(scale, zero_point, dtype):
    x = _edge_values(scale, zero_point, dtype, np.random.default_rng(0))[:3000]
    x = np.concatenate([x, np.float32([0.49999997 * scale, 0.5 * scale, 1.5 * scale, -2.5 * scale])])
    got = quantize(x, scale, zero_point, dtype)
    assert got.dtype == np.dtype(dtype)
    assert got.tolist() == _std_round_reference(x, scale, zero_point, dtype)


def test_reference_formula_rounds_just_below_a_half_to_zero():
    # the float32 formula trunc(v + copysign(0.5, v)) gave ±1 here: 0.49999997 + 0.5 rounds to 1.0 in float32
    v = np.float32([0.49999997, -0.49999997, 0.5, -0.5, 1.4999999, 2.5])
    assert quantize(v, 1.0, 0, "int8").tolist() == [0, 0, 1, -1, 1, 3]


@pytest.mark.parametrize("scale,zero_point,dtype", PARAMS)
def test_litert_fast_path_matches_the_reference_bit_for_bit(scale, zero_point, dtype):
    scale = float(np.float32(scale))  # what a .tflite file stores
    cls, _ = interpreter_class()
    fast = Quantizer.build(cls, {"dtype": dtype, "scale": scale, "zero_point": zero_point})
    assert fast is not None, "LiteRT's reference QUANTIZE kernel disagreed with quantize() at load"
    rng = np.random.default_rng(1)
    x = _edge_values(scale, zero_point, dtype, rng)
    np.testing.assert_array_equal(fast("x", x), quantize(x, scale, zero_point, dtype))
    finite = x[np.abs(x.astype(np.float64) / scale) < _QUANT_LIMIT]  # the rows the kernel itself computes
    np.testing.assert_array_equal(fast._kernel(finite), quantize(finite, scale, zero_point, dtype))
    # a large array in image shape (a resize of the one-op interpreter), then back to a small one
    big = (rng.uniform(-1.2, 1.2, (4, 96, 96, 3)) * scale * np.iinfo(dtype).max).astype(np.float32)
    big.reshape(-1)[:ties.size] = (ties := ((np.arange(-100, 100) + 0.5) * scale).astype(np.float32))
    np.testing.assert_array_equal(fast("x", big), quantize(big, scale, zero_point, dtype))
    np.testing.assert_array_equal(fast("x", x[:7]), quantize(x[:7], scale, zero_point, dtype))


def test_fast_path_refuses_nan_in_one_line():
    cls, _ = interpreter_class()
    fast = Quantizer.build(cls, {"dtype": "int8", "scale": 0.5, "zero_point": 3})
    x = np.zeros((2, 96, 96, 3), np.float32)
    x[1, 5, 5, 1] = np.nan
    with pytest.raises(InputError, match=r"input 'img' holds NaN.*1 NaN values") as err:
        fast("img", x)
    assert "\n" not in str(err.value)
    x[1, 5, 5, 1] = np.inf  # inf is not refused: it clips
    assert fast("img", x)[1, 5, 5, 1] == 127


def test_adapter_uses_the_fast_path_and_gives_the_reference_ints(runtime_models, golden):
    with open_model(runtime_models["tflite_int8"], num_threads=1) as r:
        assert r._quantizers["features"] is not None
        q = r.quantization["features"]
        x = golden(9)
        x[0, :2] = [np.inf, -np.inf]
        x[1, 0] = 0.5 * q["scale"]  # a tie
        fast = r.predict(x)["output_0"]
        r._quantizers = {"features": None}  # the numpy reference path
        ref = r.predict(x)["output_0"]
        np.testing.assert_array_equal(fast, ref)
        with pytest.raises(InputError, match="holds NaN"):
            r.predict(np.full((3, 4), np.nan, np.float32))
    with open_model(runtime_models["tflite_int8"], num_threads=1) as r:
        for n in (1, 9, 2, 9):  # resizes of both interpreters
            np.testing.assert_array_equal(r.predict(x[:n])["output_0"], ref[:n])
        np.testing.assert_array_equal(TFLiteRunner._quantize("features", x, q),
                                      quantize(x, q["scale"], q["zero_point"], "int8"))

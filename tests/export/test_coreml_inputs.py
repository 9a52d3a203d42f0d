"""Core ML ML Programs take float16/float32/int32 inputs only: uint8 pixels and bool flags are
declared int32 (same values), and verify feeds them that way, as an app would."""

from __future__ import annotations

import pytest

pytest.importorskip("coremltools", reason="Core ML export needs coremltools (edgekit[export])")


def test_uint8_and_bool_inputs_export_and_verify(tmp_path):
    import keras
    from keras import layers as L

    from edgekit.export.api import export_model
    from edgekit.parity.verify import verify

    keras.utils.set_random_seed(0)
    img = keras.Input((6, 6, 3), name="image", dtype="uint8")
    flag = keras.Input((1,), name="flag", dtype="bool")
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(L.Rescaling(1 / 255.0)(keras.ops.cast(img, "float32"))))
    x = L.Concatenate()([x, keras.ops.cast(flag, "float32")])
    model = keras.Model([img, flag], L.Dense(2)(x))
    src = tmp_path / "mixed.keras"
    model.save(src)
    rep = export_model(src, out=tmp_path / "out", formats=["coreml"], precisions=["fp32"])
    assert rep.ok, [r.error for r in rep.results]
    import json

    art = json.loads((tmp_path / "out" / "manifest.json").read_text())["artifacts"][0]
    assert {i["name"]: i["dtype"] for i in art["inputs"]} == {"image": "int32", "flag": "int32"}
    rows = [r for r in verify([tmp_path / "out"]).rows if r.format == "coreml"]
    assert [r.status for r in rows] == ["pass"], [r.message for r in rows]
    assert rows[0].rows_compared >= 8 and "fed as int32" in rows[0].message

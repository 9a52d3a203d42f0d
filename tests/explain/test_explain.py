"""edgekit explain: a fault placed in one known layer is named in every format that has it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EDGEKIT = [sys.executable, "-m", "edgekit"]


def _by_format(report) -> dict:
    return {f"{v.format}/{v.precision}": v for v in report.variants}


@pytest.mark.node
def test_perturbed_dense_named_in_every_format(perturbed):
    import edgekit

    export, original = perturbed("mlp", "d2")
    report = edgekit.explain(export, keras=original)
    got = _by_format(report)
    assert got.pop("savedmodel/fp32").status == "unsupported"   # the exported SavedModel: a note
    assert set(got) == {"tflite/fp32", "onnx/fp32", "tfjs/fp32", "coreml/fp32"}
    for name, v in got.items():
        assert v.status == "explained", (name, v.note)
        d = v.first_divergent
        assert d is not None and d.layer == "d2", (name, report.table())
        assert d.op.lower() == "tanh", name                      # the op that computed d2's output
        before = [x for x in v.layers if x.layer in ("d1", "bn") and x.max_abs_err is not None]
        assert before and all(x.status == "ok" for x in before), report.table()
    assert "first divergent layer: d2" in report.table()


@pytest.mark.node
def test_unperturbed_export_has_no_divergent_layer(perturbed):
    """The same export against its own (perturbed) model: every compared layer within fp32 tolerance.
    The exported SavedModel's runner exposes no intermediates: a note, the other variants explained."""
    import edgekit

    export, _ = perturbed("mlp", "d2")
    report = edgekit.explain(export)
    sm = report.variants[0]
    assert (sm.format, sm.status) == ("savedmodel", "unsupported"), sm
    assert "cannot expose intermediate tensors" in sm.note and "savedmodel/fp32: unsupported" in report.table()
    for v in report.variants[1:]:
        assert v.status == "explained" and v.first_divergent is None, report.table()
        compared = [x for x in v.layers if x.max_abs_err is not None]
        assert len(compared) >= 4 and max(x.max_abs_err for x in compared) < 1e-5


@pytest.mark.slow
@pytest.mark.node
def test_perturbed_conv_named_in_every_format(perturbed):
    """Conv layers: ONNX computes them NCHW between Transposes, TF.js' graph moves the ReLU after the
    pooling; the layer is still found and named in each."""
    import edgekit

    export, original = perturbed("cnn", "c2")
    report = edgekit.explain(export, keras=original, formats=["tflite", "onnx", "tfjs", "coreml"])
    assert len(report.variants) == 4
    for v in report.variants:
        assert v.first_divergent is not None and v.first_divergent.layer == "c2", report.table()
        assert next(x for x in v.layers if x.layer == "c1").status == "ok"


def test_int8_saturating_layer_named(saturating_export):
    import edgekit

    report = edgekit.explain(saturating_export, formats=["tflite"])
    got = _by_format(report)
    assert got["tflite/fp32"].first_divergent is None, report.table()
    d = got["tflite/int8"].first_divergent
    assert d is not None and d.layer == "spike", report.table()
    assert next(x for x in got["tflite/int8"].layers if x.layer == "d1").status == "ok"


def test_cli_explain_prints_layer_and_writes_json(perturbed, tmp_path):
    export, original = perturbed("mlp", "d2")
    out = tmp_path / "explain.json"
    r = subprocess.run([*EDGEKIT, "explain", str(export), "--keras", str(original), "--format", "tflite",
                        "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "tflite/fp32: first divergent layer: d2 (Dense, op TANH)" in r.stdout
    data = json.loads(out.read_text())
    assert [v["first_divergent"]["layer"] for v in data["variants"]] == ["d2"]
    assert data["variants"][0]["layers"][0]["layer"] == "d1"


def test_cli_without_keras_model_says_what_explain_needs(perturbed, tmp_path):
    export, _ = perturbed("mlp", "d2")
    copy = tmp_path / "exp"
    shutil.copytree(export, copy)
    (copy / "source" / "model.keras").unlink()
    r = subprocess.run([*EDGEKIT, "explain", str(copy)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "explain needs the Keras model" in lines[0] and "model.keras" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args,what", [(["--format", "nope"], "unknown format"),
                                       (["--precision", "int4"], "unknown precision")])
def test_cli_bad_choices_one_line(perturbed, args, what):
    export, _ = perturbed("mlp", "d2")
    r = subprocess.run([*EDGEKIT, "explain", str(export), *args], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    assert r.returncode == 2 and what in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_verify_failing_rows_carry_the_first_divergent_layer(perturbed, tmp_path):
    """verify's rows for the perturbed export (compared with the original model's outputs) fail and say d2."""
    import edgekit
    from edgekit.parity.keras_model import keras_outputs, load_keras

    export, original = perturbed("mlp", "d2")
    copy = tmp_path / "exp"
    shutil.copytree(export, copy)
    # the golden file's outputs from the original model: the perturbed files must now fail
    import numpy as np

    with np.load(copy / "reference.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(keras_outputs(load_keras(original), {"features": arrays["features"]}))
    np.savez(copy / "reference.npz", **arrays)
    man = json.loads((copy / "manifest.json").read_text())
    from edgekit.core.fsutil import sha256_file

    man["reference"]["sha256"] = sha256_file(copy / "reference.npz")
    (copy / "source" / "model.keras").write_bytes(original.read_bytes())
    (copy / "manifest.json").write_text(json.dumps(man))
    report = edgekit.verify(copy, formats=["tflite", "onnx"])
    rows = {f"{r.format}/{r.precision}": r for r in report.rows}
    for name in ("tflite/fp32", "onnx/fp32"):
        assert rows[name].status == "fail", rows[name].message
        assert "first divergent layer: d2 (Dense, op " in rows[name].message, rows[name].message
        assert rows[name]["first_divergent_layer"]["layer"] == "d2"


def test_report_section_draws_each_variant_and_names_the_layer(perturbed, tmp_path):
    import edgekit
    from edgekit.report.explain_section import section_for

    export, original = perturbed("mlp", "d2")
    doc = edgekit.explain(export, keras=original).to_dict()
    (tmp_path / "ex" / "exports").mkdir(parents=True)
    (tmp_path / "ex" / "exports" / "explain.json").write_text(json.dumps(doc, default=float))
    assert section_for(tmp_path / "empty") == ""
    frag = section_for(tmp_path)
    assert frag.count("<svg") == 1 and frag.count("<polyline") >= 4
    for fmt in ("tflite", "onnx", "tfjs", "coreml"):
        assert f"{fmt}/fp32: d2" in frag
    assert "savedmodel/fp32: unsupported" in frag          # the variant without intermediates: a note
    assert "<script" not in frag and "http" not in frag.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.slow
@pytest.mark.node
def test_zoo_cnn_blocks_perturbed_separable_conv_named_in_every_format(tmp_path):
    """A realistic block stack (Conv+BN+Add, depthwise, separable; tests/zoo): converters fold the
    BatchNormalizations into other ops and lay some tensors out NCHW with H == W == C, and the
    clean export has no divergent layer while the perturbed separable conv is named in every format."""
    import numpy as np

    import edgekit

    sys.path.insert(0, str(REPO / "tests" / "zoo"))
    import models as zoo
    from explain_models import perturb

    from edgekit.parity.keras_model import load_keras

    d = tmp_path / "cnn_blocks"
    zoo.build("cnn_blocks", d)
    with np.load(d / "reference.npz") as z:
        np.savez(d / "inputs.npz", image=z["image"])
    formats = ["tflite", "onnx", "tfjs", "coreml"]
    clean = edgekit.export(str(d / "model.keras"), out=str(d / "clean"), formats=formats, precisions=["fp32"],
                           inputs=str(d / "inputs.npz"))
    assert clean
    for v in edgekit.explain(d / "clean", formats=formats).variants:
        assert v.status == "explained" and v.first_divergent is None, v.headline()
    perturb(load_keras(d / "model.keras"), "separable_conv2d", scale=0.3).save(d / "bad.keras")
    assert edgekit.export(str(d / "bad.keras"), out=str(d / "bad"), formats=formats, precisions=["fp32"],
                          inputs=str(d / "inputs.npz"))
    report = edgekit.explain(d / "bad", keras=d / "model.keras", formats=formats)
    assert [v.first_divergent.layer if v.first_divergent else None for v in report.variants] == \
        ["separable_conv2d"] * 4, report.table()


@pytest.mark.slow
def test_tutorial_example_nested_layer_named(quick_example, tmp_path):
    """A tutorial example (regression_deep: Normalization -> a nested Sequential of Dense/Dropout ->
    Rescaling): the nested model's layers are compared one by one, as ``deep_net/dense_2``; a fault
    placed in one of them is named in TFLite and ONNX."""
    import edgekit
    from edgekit.parity.keras_model import load_keras

    ex = tmp_path / "regression_deep"
    shutil.copytree(quick_example("regression_deep"), ex, ignore=shutil.ignore_patterns("exports"))
    assert edgekit.export(str(ex), formats=["tflite", "onnx"], precisions=["fp32"])
    clean = edgekit.explain(ex)
    for v in clean.variants:
        if v.status == "explained":
            assert v.first_divergent is None, v.headline()
            assert any(d.layer == "deep_net/dense_2" and d.status == "ok" for d in v.layers), clean.table()
    model = load_keras(ex / "model.keras")
    inner = model.get_layer("deep_net").get_layer("dense_2")
    w = inner.get_weights()
    w[0] = w[0] * 1.5
    inner.set_weights(w)
    model.save(tmp_path / "bad.keras")
    assert edgekit.export(str(tmp_path / "bad.keras"), out=str(tmp_path / "bad"), formats=["tflite", "onnx"],
                          precisions=["fp32"])
    report = edgekit.explain(tmp_path / "bad", keras=ex / "model.keras", formats=["tflite", "onnx"])
    assert [v.first_divergent.layer for v in report.variants] == ["deep_net/dense_2"] * 2, report.table()

"""Every registered (format x precision) on every test model: produced, loads in its real
runtime, runs one batch without a gross mismatch against the SavedModel, carries the
metadata; the manifest is complete and its checksums match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _export_models import MODELS
from _export_runtimes import RUNNERS, TOL, coreml_spec

from edgekit.core.fsutil import sha256_tree, tree_size
from edgekit.export import registry
from edgekit.runtime import manifest as manifest_mod

MATRIX = [(f, p.value) for f, p in registry.matrix()]


def _outputs(case, fmt, precision, art, tfjs_results):
    if fmt == "tfjs":
        outs, meta, input_names = tfjs_results(case.name)[precision]
        assert sorted(input_names) == sorted(case.feeds)
        return outs, meta
    return RUNNERS[fmt](case.out / art["path"], art, case.feeds)


@pytest.mark.parametrize("fmt,precision", MATRIX, ids=[f"{f}-{p}" for f, p in MATRIX])
@pytest.mark.parametrize("model", MODELS)
def test_variant_runs_in_its_runtime(model, fmt, precision, export_case, tfjs_results):
    case = export_case(model)
    art = case.artifact(fmt, precision)
    assert art is not None, f"{fmt} {precision} not produced; failures: {case.manifest['failures']}"
    outs, meta = _outputs(case, fmt, precision, art, tfjs_results)
    assert meta is not None, "no embedded metadata"
    for key, value in case.manifest["metadata"].items():
        assert str(meta.get(key)) == str(value), f"embedded metadata {key!r} differs from the manifest"
    assert meta["format"] == fmt and meta["precision"] == precision
    if outs is None:
        pytest.skip(f"{fmt} values not checked: edgekit.runtime.coreml's reference evaluator lacks an op of {model}")
    assert sorted(outs) == sorted(case.expected), "output names differ from the SavedModel signature's"
    for name, ref in case.expected.items():
        got = np.asarray(outs[name], dtype=np.float32)
        assert got.shape == ref.shape, f"{name}: shape {got.shape} vs SavedModel {ref.shape}"
        assert np.isfinite(got).all()
        err = float(np.abs(got - ref).max())
        bound = TOL[precision] * max(1.0, float(np.abs(ref).max()))
        assert err <= bound, f"{name}: max |diff| {err:.3g} > gross-mismatch bound {bound:.3g}"


@pytest.mark.parametrize("model", MODELS)
def test_manifest_complete_and_checksums_match(model, export_case):
    case = export_case(model)
    m = manifest_mod.load(case.out)
    assert not m.failures, m.failures
    assert {(a.format, a.precision) for a in m.artifacts} == set(MATRIX)
    src = m.source
    assert src["fingerprint"] == sha256_tree(case.saved_model)
    names_in = [i["name"] for i in src["inputs"]]
    names_out = [o["name"] for o in src["outputs"]]
    assert sorted(names_in) == sorted(case.feeds) and sorted(names_out) == sorted(case.expected)
    listed = set()
    for a in m.artifacts:
        full = a.verify(case.out)  # exists and sha256 matches
        assert a.size_bytes == tree_size(full) > 0
        raw = a.raw
        assert raw["converter"] and raw["converter_version"] not in ("", "not installed")
        assert raw["seconds"] > 0 and "quantization" in raw
        # an export counts only once its file ran in its runtime; the graph it came from is recorded
        assert raw.get("ran_in"), f"{a.path} was not run once after conversion: {raw.get('not_run')}"
        assert isinstance(raw.get("rewrites"), list) and raw.get("graph"), raw
        assert [i["name"] for i in a.inputs] == names_in and [o["name"] for o in a.outputs] == names_out
        for t in a.inputs + a.outputs:
            assert t["shape"][0] is None, f"{a.path}: batch dimension is not dynamic: {t}"
        files = [full] if full.is_file() else [p for p in full.rglob("*") if p.is_file()]
        listed |= {p.relative_to(case.out).as_posix() for p in files}
    on_disk = {p.relative_to(case.out).as_posix() for p in case.out.rglob("*") if p.is_file()}
    assert on_disk - listed == {"manifest.json"}, "files in the export directory the manifest does not list"
    int8 = next(a for a in m.artifacts if (a.format, a.precision) == ("tflite", "int8"))
    assert all(t["dtype"] == "int8" for t in int8.inputs + int8.outputs)
    for group in ("inputs", "outputs"):
        for p in int8.raw["quantization"][group].values():
            assert p["scale"] > 0 and -128 <= p["zero_point"] <= 127 and p["dtype"] == "int8"


@pytest.mark.parametrize("model", ["moons_h3"])
def test_example_metadata_embedded(model, export_case):
    case = export_case(model)
    meta = case.manifest["metadata"]
    assert meta["example"] == model and meta["task"] == "multiclass"
    assert "labels" in meta and "output_meaning" in meta and meta["edgekit_version"]


def test_coreml_package_is_flexible_ml_program(export_case):
    case = export_case("two_in_two_out")
    for precision in ("fp32", "fp16"):
        art = case.artifact("coreml", precision)
        mlmodel = coreml_spec(case.out / art["path"])
        spec = mlmodel.get_spec()
        assert spec.WhichOneof("Type") == "mlProgram"
        for feature in spec.description.input:
            ranges = feature.type.multiArrayType.shapeRange.sizeRanges
            assert (ranges[0].lowerBound, ranges[0].upperBound) == (1, art["batch_range"][1])
        assert sorted(f.name for f in spec.description.output) == ["output_0", "output_1"]


def test_tflite_batch_is_resizable(export_case):
    from ai_edge_litert.interpreter import Interpreter

    case = export_case("batchnorm")
    art = case.artifact("tflite", "fp32")
    run = Interpreter(model_path=str(case.out / art["path"])).get_signature_runner("serving_default")
    for n in (1, 3, 6):
        out = run(features=case.feeds["features"][:n])
        np.testing.assert_allclose(out["output_0"], case.expected["output_0"][:n], atol=1e-5)


def test_every_registered_variant_is_tested():
    """Meta-test: a format or precision added to the registry without a runtime check fails here."""
    marks = [m for m in test_variant_runs_in_its_runtime.pytestmark if m.name == "parametrize"]
    params = next(list(m.args[1]) for m in marks if m.args[0] == "fmt,precision")
    assert sorted(params) == sorted((f, p.value) for f, p in registry.matrix())
    for fmt in registry.formats():
        assert fmt in RUNNERS or fmt == "tfjs", f"no runtime check for format {fmt}"
    for _, p in registry.matrix():
        assert p.value in TOL, f"no gross-mismatch tolerance for precision {p.value}"
    assert Path(__file__).with_name("run_tfjs.cjs").is_file()

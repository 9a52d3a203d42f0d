"""``edgekit export``: bad input (one line, exit 2, nothing written), converter failures
recorded without stopping other variants, re-runs, defaults, and the registry rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.cli import run
from edgekit.core.errors import UsageError
from edgekit.export import registry
from edgekit.runtime import manifest as manifest_mod

REPO = Path(__file__).resolve().parents[2]


def _save_module(dest: Path, kind: str) -> Path:
    """Tiny SavedModels written with tf.Module (no Keras): float, no signature, int input, det."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class Lin(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(rng.normal(size=(4, 2)).astype("float32"))
            self.b = tf.Variable(rng.normal(size=(2,)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.sigmoid(tf.matmul(x, self.w) + self.b)}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.int32, name="ids")])
        def serve_int(self, ids):
            return {"y": tf.matmul(tf.cast(ids, tf.float32), self.w)}

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.string, name="text")])
        def serve_str(self, text):
            return {"y": tf.cast(tf.strings.length(text), tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None, 2, 2], tf.float32, name="m")])
        def serve_det(self, m):  # MatrixDeterminant: no TFLite builtin, tf2onnx converts it
            return {"det": tf.reshape(tf.linalg.det(m), [-1, 1])}

    m = Lin()
    sigs = {"float": {"serving_default": m.serve}, "int": {"serving_default": m.serve_int},
            "det": {"serving_default": m.serve_det}, "str": {"serving_default": m.serve_str},
            "nosig": {}}[kind]
    tf.saved_model.save(m, str(dest), signatures=sigs)
    return dest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny-models")
    return {k: _save_module(root / k, k) for k in ("float", "int", "det", "str", "nosig")}


def _cli(argv, capsys) -> tuple[int, str, str]:
    code = run(["export", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _listing(parent: Path) -> set:
    return {p.name for p in parent.iterdir()} if parent.exists() else set()


BAD = {
    "not_saved_model": (lambda t, p: [p / "empty_dir"], "not a SavedModel"),
    "no_signature": (lambda t, p: [t["nosig"]], "no serving signature"),
    "string_input": (lambda t, p: [t["str"]], "dtype edgekit cannot export"),
    "not_keras_file": (lambda t, p: [p / "afile"], "not a .keras model"),
    "keras_missing": (lambda t, p: [p / "nope.keras"], "does not exist"),
    "input_shape_on_savedmodel": (lambda t, p: [t["float"], "--input-shape", "x=4"], "needs a Keras source"),
    "bad_input_shape": (lambda t, p: [t["float"], "--input-shape", "x"], "NAME=D1xD2"),
    "bad_int_range": (lambda t, p: [t["int"], "--int-range", "5,1"], "LO < HI"),
    "inputs_missing": (lambda t, p: [t["float"], "--inputs", p / "nope.npz"], "does not exist"),
    "inputs_wrong_keys": (lambda t, p: [t["float"], "--inputs", p / "wrongkey.npz"],
                          "missing ['x'], extra ['a', 'b']"),
    "unknown_format": (lambda t, p: [t["float"], "--formats", "tflite,keras2"], "tflite, coreml, tfjs, onnx"),
    "unknown_precision": (lambda t, p: [t["float"], "--precisions", "fp8"], "fp32, fp16, int8_dynamic, int8"),
    "precision_unsupported": (lambda t, p: [t["float"], "--formats", "onnx", "--precisions", "fp16"],
                              "onnx: fp32,int8_dynamic"),
    "int8_no_calibration": (lambda t, p: [t["float"], "--formats", "tflite", "--precisions", "int8"],
                            "--calibration FILE.npz"),
    "calibration_wrong_shape": (lambda t, p: [t["float"], "--calibration", p / "wrong.npy"], "wrong shape"),
    "calibration_wrong_key": (lambda t, p: [t["float"], "--calibration", p / "wrongkey.npz"],
                              "lacks model inputs"),
    "calibration_missing": (lambda t, p: [t["float"], "--calibration", p / "nope.npz"], "does not exist"),
    "out_under_a_file": (lambda t, p: [t["float"], "--out", p / "afile" / "sub"], "cannot create output"),
    "out_unwritable": (lambda t, p: [t["float"], "--out", "/proc/edgekit-export-test"], "not writable"),
    "out_occupied": (lambda t, p: [t["float"], "--out", p / "occupied"], "holds no edgekit manifest"),
    "bad_opset": (lambda t, p: [t["float"], "--opset", "99"], "opset"),
    "keep_float_without_int8": (lambda t, p: [t["float"], "--formats", "onnx", "--precisions", "fp32",
                                              "--keep-float", "auto"], "--keep-float applies to no variant"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2_nothing_written(case, tiny, tmp_path, capsys):
    (tmp_path / "empty_dir").mkdir()
    np.save(tmp_path / "wrong.npy", np.zeros((10, 3), np.float32))
    np.savez(tmp_path / "wrongkey.npz", a=np.zeros((10, 4), np.float32), b=np.zeros((10, 4), np.float32))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "keep.txt").write_text("mine")
    make_argv, needle = BAD[case]
    argv = make_argv(tiny, tmp_path)
    if "--out" not in argv:
        argv += ["--out", tmp_path / "exports"]
    before = _listing(tmp_path)
    sm_before = {p: _listing(p) for p in tiny.values()}
    code, out, err = _cli(argv, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgekit: error:"), err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err and out == ""
    assert before == _listing(tmp_path), "files were written"
    assert (tmp_path / "occupied" / "keep.txt").read_text() == "mine"
    assert sm_before == {p: _listing(p) for p in tiny.values()}


def test_missing_path_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgekit", "export", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
    assert "expected:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_cli_module_imports_no_heavy_library():
    code = ("import sys, edgekit.cli.export, edgekit.export.registry; edgekit.export.registry.formats(); "
            "heavy = [m for m in ('tensorflow', 'coremltools', 'tensorflowjs', 'onnxruntime', 'tf2onnx', "
            "'numpy') if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_converter_failure_is_recorded_and_others_still_run(tiny, tmp_path, capsys):
    out = tmp_path / "det_exports"
    code, stdout, _ = _cli([tiny["det"], "--formats", "tflite,onnx", "--precisions", "fp32,int8_dynamic",
                            "--out", out], capsys)
    assert code == 1
    m = manifest_mod.load(out)
    failed = {(f["format"], f["precision"]) for f in m.failures}
    assert failed == {("tflite", "fp32"), ("tflite", "int8_dynamic")}
    assert all("MatrixDeterminant" in f["error"] for f in m.failures)
    assert {(a.format, a.precision) for a in m.artifacts} == {("onnx", "fp32"), ("onnx", "int8_dynamic")}
    for a in m.artifacts:
        a.verify(out)
    assert not (out / "tflite").exists() or not any((out / "tflite").iterdir()), "partial TFLite output left"
    assert "failed: ConverterError" in stdout and "ok" in stdout


def test_rerun_with_clean_replaces_previous_exports(tiny, tmp_path, capsys):
    out = tmp_path / "exports"
    assert _cli([tiny["float"], "--formats", "onnx", "--out", out], capsys)[0] == 0
    assert (out / "onnx" / "model_fp32.onnx").is_file()
    code, stdout, _ = _cli([tiny["float"], "--formats", "tflite", "--precisions", "fp32", "--out", out,
                            "--clean"], capsys)
    assert code == 0
    m = manifest_mod.load(out)
    assert [(a.format, a.precision) for a in m.artifacts] == [("tflite", "fp32")]
    assert not (out / "onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    header = stdout.splitlines()[1].split()
    assert header == ["format", "precision", "size", "seconds", "status"]


def test_default_precisions_skip_int8_without_calibration(tiny, tmp_path, capsys):
    out = tmp_path / "exports"
    code, stdout, _ = _cli([tiny["float"], "--formats", "tflite", "--out", out], capsys)
    assert code == 0
    m = manifest_mod.load(out)
    assert {a.precision for a in m.artifacts} == {"fp32", "fp16", "int8_dynamic"}
    (skip,) = m.data["skipped"]
    assert (skip["format"], skip["precision"]) == ("tflite", "int8") and "--calibration" in skip["reason"]
    assert "skipped: no calibration data" in stdout


def test_example_directory_defaults(tiny, tmp_path):
    """An artifacts/<example> dir: default out <example>/exports, its calibration.npz feeds int8, and
    its saved_model/1 given directly counts as the example."""
    import shutil

    from edgekit.export.api import export_model

    ex = tmp_path / "tiny_example"
    shutil.copytree(tiny["float"], ex / "saved_model" / "1")
    (ex / "example.json").write_text(json.dumps({"name": "tiny_example", "task": "binary",
                                                 "labels": ["no", "yes"]}))
    np.savez(ex / "calibration.npz", x=np.random.default_rng(1).normal(size=(32, 4)).astype("float32"))
    report = export_model(ex, formats=["tflite"], precisions=["int8"])
    assert report.ok and report.out_dir == ex / "exports"
    m = manifest_mod.load(ex / "exports")
    (art,) = m.artifacts
    assert art.raw["quantization"]["calibration"]["samples"] == 32
    assert m.data["metadata"]["example"] == "tiny_example" and "'yes'" in m.data["metadata"]["output_meaning"]
    report2 = export_model(ex / "saved_model" / "1", formats=["onnx"], precisions=["fp32"])
    assert report2.out_dir == ex / "exports" and report2.ok


def test_registry_refuses_duplicates_and_bad_precisions():
    from edgekit.export.base import Exporter, Precision

    registry.formats()  # fills the registry

    class Dup(Exporter):
        name, precisions, converter = "tflite", (Precision.FP32,), "x"

        def export(self, *a):  # pragma: no cover - never called
            raise NotImplementedError

    with pytest.raises(ValueError, match="duplicate"):
        registry.register(Dup)

    class Bad(Dup):
        name, precisions = "zzz", ("fp8",)

    with pytest.raises(ValueError, match="invalid precisions"):
        registry.register(Bad)
    assert "zzz" not in registry.formats()

    class Unlisted(Dup):
        name = "zzz"

    with pytest.raises(ValueError, match="not listed in edgekit.core.formats"):
        registry.register(Unlisted)

    class Disagrees(Dup):  # a format whose precisions differ from the one list
        name, precisions = "onnx", (Precision.FP32,)

    registry._REGISTRY.pop("onnx", None)
    try:
        with pytest.raises(ValueError, match="edgekit.core.formats lists"):
            registry.register(Disagrees)
    finally:
        import importlib

        import edgekit.export.onnx as onnx_mod

        importlib.reload(onnx_mod)  # re-registers the real ONNX exporter
    assert registry.formats()["onnx"].precisions == ("fp32", "int8_dynamic")


def test_plan_reads_the_registry():
    assert registry.plan() == registry.matrix()
    assert registry.plan(["onnx"], ["int8_dynamic", "fp32"]) == [("onnx", "fp32"), ("onnx", "int8_dynamic")]
    assert registry.plan(["tfjs", "tflite"], ["fp16"]) == [("tfjs", "fp16"), ("tflite", "fp16")]
    with pytest.raises(UsageError, match="unknown export format"):
        registry.plan(["bogus"])


def test_directory_of_examples_exports_each(tiny, tmp_path, capsys):
    import shutil

    for name in ("ex_a", "ex_b"):
        shutil.copytree(tiny["float"], tmp_path / "artifacts" / name / "saved_model" / "1")
        (tmp_path / "artifacts" / name / "example.json").write_text(json.dumps({"name": name, "task": "binary"}))
    code, stdout, _ = _cli([tmp_path / "artifacts", "--formats", "onnx", "--precisions", "fp32"], capsys)
    assert code == 0
    for name in ("ex_a", "ex_b"):
        (art,) = manifest_mod.load(tmp_path / "artifacts" / name / "exports").artifacts
        assert (art.format, art.precision) == ("onnx", "fp32")
    assert stdout.count("manifest:") == 2


def test_markdown_table_lists_every_variant():
    table = registry.markdown_table()
    for fmt, exp in registry.formats().items():
        assert f"| {fmt} | {', '.join(p.value for p in exp.precisions)} |" in table


def test_savedmodel_loaded_once_and_opset_selectable(tiny, tmp_path, monkeypatch):
    import onnx
    import tensorflow as tf

    from edgekit.export.api import export_model

    calls = []
    real_load = tf.saved_model.load
    monkeypatch.setattr(tf.saved_model, "load", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    report = export_model(tiny["float"], out=tmp_path / "o", precisions=["fp32"], opset=13)
    assert report.ok and len(report.results) == len(registry.formats())
    assert len(calls) == 1, f"SavedModel loaded {len(calls)} times in one export run"
    model = onnx.load(str(tmp_path / "o" / "onnx" / "model_fp32.onnx"))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {13}
    assert manifest_mod.load(tmp_path / "o").data["options"]["opset"] == 13


def test_integer_input_savedmodel_exports_with_its_dtype(tiny, tmp_path, capsys):
    """An int32 input is exported as int32 (it used to be refused as 'not float32')."""
    code, out, err = _cli([tiny["int"], "--formats", "tflite,onnx", "--precisions", "fp32",
                           "--out", tmp_path / "ex"], capsys)
    assert code == 0, out + err
    man = json.loads((tmp_path / "ex" / "manifest.json").read_text())
    assert man["source"]["kind"] == "savedmodel"
    assert [i["dtype"] for i in man["source"]["inputs"]] == ["int32"]
    assert {a["format"]: a["inputs"][0]["dtype"] for a in man["artifacts"]} == {"tflite": "int32", "onnx": "int32"}


def test_rerun_keeps_the_other_variants(tiny, tmp_path, capsys):
    """Without --clean a re-export replaces only the chosen variants: the ONNX file exported first
    stays byte for byte, listed in the merged manifest, and the summary says what was kept."""
    from edgekit.core.fsutil import sha256_file

    out = tmp_path / "exports"
    assert _cli([tiny["float"], "--formats", "onnx", "--precisions", "fp32", "--out", out], capsys)[0] == 0
    onnx_sha = sha256_file(out / "onnx" / "model_fp32.onnx")
    code, stdout, _ = _cli([tiny["float"], "--formats", "tflite", "--precisions", "fp32", "--out", out], capsys)
    assert code == 0
    m = manifest_mod.load(out)
    assert [(a.format, a.precision) for a in m.artifacts] == [("tflite", "fp32"), ("onnx", "fp32")]
    assert sha256_file(out / "onnx" / "model_fp32.onnx") == onnx_sha
    for a in m.artifacts:
        a.verify(out)
    assert "kept 1 earlier variant(s)" in stdout and "stale" not in stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-") or p.name.endswith(".lock")]


def test_clean_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        run(["export", "--help"])
    assert "--clean" in capsys.readouterr().out

"""Corrupted model files: truncated / random-bytes ``.tflite`` and ``.onnx``, empty or invalid
``model.json``, a missing or short TF.js shard, a corrupted ``.mlpackage``.

Two ways a broken file reaches edgekit, both covered for every damage:

* the file changed after export: ``verify`` (CLI, a real process) finds the sha256 mismatch
  before any runtime starts -> exit 2, one line saying "corrupted or tampered with", nothing
  written (no report);
* the manifest agrees with the broken file (a converter wrote garbage, or someone re-hashed):
  the runtime adapter (``edgekit.runtime.registry.open_model``, the Python API) refuses to load it with
  one :class:`RuntimeFailure` line (exit code 1) and writes nothing; ``verify`` turns that into
  an ``error`` row (exit 1) and writes only its report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _robust import assert_one_line_error, assert_one_line_exc, diff_snapshots, run_cli, snapshot

from edgekit.core.errors import EdgekitError, RuntimeFailure
from edgekit.core.fsutil import sha256_tree, tree_size
from edgekit.runtime import manifest as mf

ARTIFACT = {"tflite": "tflite/model_fp32.tflite", "onnx": "onnx/model_fp32.onnx", "tfjs": "tfjs/fp32",
            "coreml": "coreml/model_fp32.mlpackage"}
MLMODEL = "Data/com.apple.CoreML/model.mlmodel"
WEIGHTS = "Data/com.apple.CoreML/weights/weight.bin"


def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _random(p):
    p.write_bytes(np.random.default_rng(0).bytes(p.stat().st_size))


# case id -> (format, file inside the artifact ("" = the artifact file itself), damage,
#             words of the runtime's load error)
DAMAGE = {
    "tflite-truncated": ("tflite", "", _truncate, ["tflite runtime could not load", "Flatbuffer"]),
    "tflite-random-bytes": ("tflite", "", _random, ["tflite runtime could not load", "Flatbuffer"]),
    "tflite-empty": ("tflite", "", lambda p: p.write_bytes(b""), ["tflite runtime could not load"]),
    "onnx-truncated": ("onnx", "", _truncate, ["onnx runtime could not load", "Protobuf parsing failed"]),
    "onnx-random-bytes": ("onnx", "", _random, ["onnx runtime could not load", "Protobuf parsing failed"]),
    "tfjs-empty-model-json": ("tfjs", "model.json", lambda p: p.write_text(""), ["TF.js", "JSON"]),
    "tfjs-invalid-model-json": ("tfjs", "model.json", lambda p: p.write_text("{not json"), ["TF.js", "JSON"]),
    "tfjs-model-json-not-a-graph": ("tfjs", "model.json", lambda p: p.write_text("[]"),
                                    ["TF.js", "expected a graph-model"]),
    "tfjs-shard-missing": ("tfjs", "group1-shard1of1.bin", lambda p: p.unlink(), ["TF.js", "ENOENT"]),
    "tfjs-shard-short": ("tfjs", "group1-shard1of1.bin", _truncate, ["TF.js", "byte length"]),
    "coreml-random-spec": ("coreml", MLMODEL, _random, ["coreml runtime could not load", "DecodeError"]),
    "coreml-truncated-weights": ("coreml", WEIGHTS, _truncate, ["coreml runtime could not load"]),
    "coreml-invalid-manifest": ("coreml", "Manifest.json", lambda p: p.write_text("{"),
                                ["coreml runtime could not load", "parse error"]),
}


def _damage(ex, case):
    fmt, inner, fn, _ = DAMAGE[case]
    art = ex / "exports" / ARTIFACT[fmt]
    fn(art / inner if inner else art)
    return fmt, art


def _rehash(ex, fmt):
    """Make the manifest agree with the (damaged) file, as a buggy converter would have."""
    path = ex / "exports" / mf.MANIFEST_NAME
    data = json.loads(path.read_text())
    for a in data["artifacts"]:
        if a["format"] == fmt:
            full = mf.confined(path.parent, a["path"])
            a["sha256"], a["size_bytes"] = sha256_tree(full), tree_size(full)
    mf.save(path, data)


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_after_export_verify_reports_tampering(case, fresh, tmp_path):
    ex = fresh()
    _damage(ex, case)
    before = snapshot(tmp_path)
    proc = run_cli(["verify", ex], runtime=True)
    assert_one_line_error(proc, 2, "checksum mismatch", "corrupted or tampered with", ARTIFACT[DAMAGE[case][0]],
                          prefix="python -m edgekit.runtime: error:")
    assert proc.stdout == ""
    assert diff_snapshots(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_but_rehashed_runtime_refuses_to_load(case, fresh, tmp_path):
    from edgekit.runtime.registry import open_model

    ex = fresh()
    fmt, art = _damage(ex, case)
    _rehash(ex, fmt)
    before = snapshot(tmp_path)
    with pytest.raises(EdgekitError) as exc:
        with open_model(art) as r:
            r.predict(np.zeros((2, 10), np.float32))
    assert isinstance(exc.value, RuntimeFailure) and exc.value.exit_code == 1
    assert_one_line_exc(exc.value, *DAMAGE[case][3])
    assert diff_snapshots(before, snapshot(tmp_path)) == []


def test_damaged_but_rehashed_verify_gives_error_rows_and_only_its_report(fresh, tmp_path):
    """Several broken files in one run: each is an ``error`` row, the others still pass, exit 1."""
    ex = fresh()
    for case in ("tflite-truncated", "onnx-random-bytes"):
        _rehash(ex, _damage(ex, case)[0])
    before = snapshot(tmp_path)
    proc = run_cli(["verify", ex, "--formats", "tflite", "onnx", "coreml"])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    rows = json.loads((ex / "report.json").read_text())
    status = {r["format"]: r["status"] for r in rows}
    assert status == {"tflite": "error", "onnx": "error", "coreml": "pass"}, status
    msgs = {r["format"]: r["message"] for r in rows}
    assert "Flatbuffer" in msgs["tflite"] and "Protobuf parsing failed" in msgs["onnx"]
    changes = diff_snapshots(before, snapshot(tmp_path))
    assert sorted(changes) == [f"new: {ex.name}/{n}" for n in ("parity.npz", "report.json", "report.md")], changes


def test_savedmodel_without_variables_export_cli_refuses(fresh, tmp_path):
    ex = fresh()
    import shutil

    shutil.rmtree(ex / "saved_model" / "1" / "variables")
    before = snapshot(tmp_path)
    proc = run_cli(["export", ex, "--formats", "tflite", "--precisions", "fp32", "--out", tmp_path / "out"])
    assert_one_line_error(proc, 2, "cannot load SavedModel", "saved_model/1")
    assert diff_snapshots(before, snapshot(tmp_path)) == []


def test_savedmodel_without_variables_api_refuses(fresh, tmp_path):
    import shutil

    import edgekit.parity.reference  # noqa: F401  (registers the savedmodel runner; order-independent)
    from edgekit.runtime.registry import open_model

    ex = fresh()
    shutil.rmtree(ex / "saved_model" / "1" / "variables")
    before = snapshot(tmp_path)
    with pytest.raises(EdgekitError) as exc:
        open_model(ex / "saved_model" / "1")
    assert_one_line_exc(exc.value, "savedmodel runtime could not load")
    assert diff_snapshots(before, snapshot(tmp_path)) == []


def test_random_bytes_saved_model_pb_export_cli_refuses(fresh, tmp_path):
    ex = fresh()
    _random(ex / "saved_model" / "1" / "saved_model.pb")
    before = snapshot(tmp_path)
    proc = run_cli(["export", ex, "--formats", "onnx", "--precisions", "fp32", "--out", tmp_path / "out"])
    assert_one_line_error(proc, 2, "cannot load SavedModel")
    assert diff_snapshots(before, snapshot(tmp_path)) == []


def _shard_path(ex, tmp, value):
    """Move the TF.js shard outside the model dir and point model.json at it."""
    model = ex / "exports" / "tfjs" / "fp32"
    (model / "group1-shard1of1.bin").rename(tmp / "outside.bin")
    data = json.loads((model / "model.json").read_text())
    data["weightsManifest"][0]["paths"] = [value(model, tmp)]
    (model / "model.json").write_text(json.dumps(data))
    return model


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_tfjs_model_json_cannot_read_shards_outside_its_directory(kind, fresh, tmp_path):
    """model.json names its weight files: a hostile one must not make the runtime read elsewhere."""
    from edgekit.runtime.registry import open_model

    ex = fresh()
    if kind == "symlink":
        model = _shard_path(ex, tmp_path, lambda m, t: "group1-shard1of1.bin")
        (model / "group1-shard1of1.bin").symlink_to(tmp_path / "outside.bin")
    else:
        rel = {"dotdot": lambda m, t: "../" * len(m.relative_to(t).parts) + "outside.bin",
               "absolute": lambda m, t: str(t / "outside.bin")}[kind]
        model = _shard_path(ex, tmp_path, rel)
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeFailure) as exc:
        with open_model(model) as r:
            r.predict(np.zeros((1, 10), np.float32))
    assert_one_line_exc(exc.value, "TF.js", "leaves the model directory")
    assert diff_snapshots(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("kind", ["item-path-dotdot", "weights-symlink"])
def test_mlpackage_cannot_point_outside_itself(kind, fresh, tmp_path):
    """An .mlpackage's Manifest.json names its spec file; coremltools follows '..' and symlinks."""
    import shutil

    from edgekit.core.errors import InputError
    from edgekit.runtime.registry import open_model

    ex = fresh()
    pkg = ex / "exports" / ARTIFACT["coreml"]
    if kind == "item-path-dotdot":
        (pkg / MLMODEL).rename(tmp_path / "outside.mlmodel")
        data = json.loads((pkg / "Manifest.json").read_text())
        root = data["rootModelIdentifier"]
        depth = len((pkg / "Data").relative_to(tmp_path).parts)
        data["itemInfoEntries"][root]["path"] = "../" * depth + "outside.mlmodel"
        (pkg / "Manifest.json").write_text(json.dumps(data))
    else:
        weights = pkg / "Data" / "com.apple.CoreML" / "weights"
        shutil.move(weights, tmp_path / "weights-outside")
        weights.symlink_to(tmp_path / "weights-outside", target_is_directory=True)
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as exc:
        open_model(pkg)
    assert exc.value.exit_code == 2
    assert_one_line_exc(exc.value, "Core ML package points outside itself")
    assert diff_snapshots(before, snapshot(tmp_path)) == []


def test_onnx_external_data_outside_the_model_dir_is_refused(fresh, tmp_path):
    """An .onnx may keep tensors in external files; a location escaping the model dir is refused."""
    import onnx
    from onnx import numpy_helper

    from edgekit.runtime.registry import open_model

    ex = fresh()
    path = ex / "exports" / ARTIFACT["onnx"]
    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: t.ByteSize())
    arr = numpy_helper.to_array(init)
    arr.tofile(tmp_path / "outside.bin")
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    depth = len(path.parent.relative_to(tmp_path).parts)
    for k, v in (("location", "../" * depth + "outside.bin"), ("offset", "0"), ("length", str(arr.nbytes))):
        entry = init.external_data.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeFailure) as exc:
        open_model(path)
    assert_one_line_exc(exc.value, "onnx runtime could not load", "escapes model directory")
    assert diff_snapshots(before, snapshot(tmp_path)) == []

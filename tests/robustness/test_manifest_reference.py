"""Hostile manifests and golden files given to ``verify`` (a real ``edgekit verify`` process):
a bad checksum is reported as corruption/tampering, escaping paths (absolute, ``..``, a symlink
pointing outside) are refused, broken JSON / schema and broken ``reference.npz`` files (missing
keys, wrong shapes, not an npz, a pickled object array) are bad input: exit 2, one line, no
traceback, nothing written. The same checks through the Python API (``edgekit.runtime.manifest``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _robust import assert_one_line_error, assert_one_line_exc, diff_snapshots, run_cli, snapshot

from edgekit.core.errors import InputError, IntegrityError
from edgekit.runtime import manifest as mf


def _edit_manifest(ex, fn):
    path = ex / "exports" / mf.MANIFEST_NAME
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _art(data, fmt="tflite"):
    return next(a for a in data["artifacts"] if a["format"] == fmt)


def _bad_checksum(ex, tmp):
    _edit_manifest(ex, lambda d: _art(d).update(sha256="0" * 64))


def _absolute(ex, tmp):
    _edit_manifest(ex, lambda d: _art(d).update(path=str(ex / "exports" / "tflite" / "model_fp32.tflite")))


def _dotdot(ex, tmp):
    _edit_manifest(ex, lambda d: _art(d).update(path="../saved_model/1/saved_model.pb"))


def _dotdot_inside(ex, tmp):  # climbs out and back in: still refused, '..' is never allowed
    _edit_manifest(ex, lambda d: _art(d).update(path="tflite/../tflite/model_fp32.tflite"))


def _symlink_file(ex, tmp):
    outside = tmp / "outside.tflite"
    outside.write_bytes((ex / "exports" / "tflite" / "model_fp32.tflite").read_bytes())
    (ex / "exports" / "tflite" / "model_fp32.tflite").unlink()
    (ex / "exports" / "tflite" / "model_fp32.tflite").symlink_to(outside)


def _symlink_dir(ex, tmp):
    import shutil

    shutil.move(ex / "exports" / "tfjs", tmp / "tfjs-outside")
    (ex / "exports" / "tfjs").symlink_to(tmp / "tfjs-outside", target_is_directory=True)


def _symlink_inside_dir_artifact(ex, tmp):
    """The TF.js shard replaced by a symlink to an identical file outside: same sha256, but the
    runtime would read outside the export directory."""
    shard = ex / "exports" / "tfjs" / "fp32" / "group1-shard1of1.bin"
    outside = tmp / "shard-outside.bin"
    outside.write_bytes(shard.read_bytes())
    shard.unlink()
    shard.symlink_to(outside)


def _symlink_subdir_in_package(ex, tmp):
    import shutil

    weights = ex / "exports" / "coreml" / "model_fp32.mlpackage" / "Data" / "com.apple.CoreML" / "weights"
    shutil.move(weights, tmp / "weights-outside")
    weights.symlink_to(tmp / "weights-outside", target_is_directory=True)


def _windows_drive(ex, tmp):
    _edit_manifest(ex, lambda d: _art(d).update(path="C:/models/model_fp32.tflite"))


def _missing_file(ex, tmp):
    (ex / "exports" / "onnx" / "model_fp32.onnx").unlink()


def _invalid_json(ex, tmp):
    (ex / "exports" / mf.MANIFEST_NAME).write_text('{"schema": "edgekit.manifest/1", "artifacts": [')


def _empty_manifest(ex, tmp):
    (ex / "exports" / mf.MANIFEST_NAME).write_text("")


def _wrong_schema(ex, tmp):
    _edit_manifest(ex, lambda d: d.update(schema="something/9"))


def _artifact_not_a_dict(ex, tmp):
    _edit_manifest(ex, lambda d: d["artifacts"].append("model.tflite"))


def _npz(ex, **arrays):
    np.savez(ex / "reference.npz", **arrays)


def _ref(ex):
    with np.load(ex / "reference.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _ref_missing_output(ex, tmp):
    r = _ref(ex)
    del r["output_0"]
    _npz(ex, **r)


def _ref_missing_input(ex, tmp):
    r = _ref(ex)
    del r["features"]
    _npz(ex, **r)


def _ref_wrong_feature_count(ex, tmp):
    r = _ref(ex)
    r["features"] = r["features"][:, :7]
    _npz(ex, **r)


def _ref_wrong_rank(ex, tmp):
    r = _ref(ex)
    r["output_0"] = r["output_0"][:, 0]
    _npz(ex, **r)


def _ref_row_mismatch(ex, tmp):
    r = _ref(ex)
    r["output_0"] = r["output_0"][:-3]
    _npz(ex, **r)


def _ref_random_bytes(ex, tmp):
    (ex / "reference.npz").write_bytes(np.random.default_rng(1).bytes(4096))


def _ref_pickled_objects(ex, tmp):
    r = _ref(ex)
    r["output_0"] = np.array([{"exec": "print('pwned')"}] * len(r["output_0"]), dtype=object)
    _npz(ex, **r)   # np.savez pickles object arrays; edgekit must never unpickle them


def _ref_missing(ex, tmp):
    (ex / "reference.npz").unlink()


def _example_json_invalid(ex, tmp):
    (ex / "example.json").write_text("{")


# case -> (make the damage, exit code, words in the single error line)
CASES = {
    "bad-checksum": (_bad_checksum, 2, ["checksum mismatch for tflite/model_fp32.tflite",
                                        "corrupted or tampered with"]),
    "absolute-path": (_absolute, 2, ["manifest path must be relative"]),
    "dotdot-path": (_dotdot, 2, ["escapes the manifest's directory", "../saved_model"]),
    "dotdot-inside-path": (_dotdot_inside, 2, ["escapes the manifest's directory"]),
    "drive-letter-path": (_windows_drive, 2, ["manifest path must be relative"]),
    "symlink-inside-dir-artifact": (_symlink_inside_dir_artifact, 2,
                                    ["resolves outside the manifest's directory (symlink?)",
                                     "tfjs/fp32/group1-shard1of1.bin"]),
    "symlink-subdir-in-mlpackage": (_symlink_subdir_in_package, 2,
                                    ["resolves outside the manifest's directory (symlink?)", "weights"]),
    "symlink-file-outside": (_symlink_file, 2, ["resolves outside the manifest's directory (symlink?)"]),
    "symlink-dir-outside": (_symlink_dir, 2, ["resolves outside the manifest's directory (symlink?)"]),
    "listed-file-missing": (_missing_file, 2, ["manifest lists a file that does not exist"]),
    "manifest-invalid-json": (_invalid_json, 2, ["manifest is not valid JSON"]),
    "manifest-empty": (_empty_manifest, 2, ["manifest is not valid JSON"]),
    "manifest-wrong-schema": (_wrong_schema, 2, ["wrong schema", "something/9", "edgekit.manifest/1"]),
    "manifest-artifact-not-a-dict": (_artifact_not_a_dict, 2, ["lacks keys"]),
    "reference-missing-output-key": (_ref_missing_output, 2, ["missing output ['output_0']"]),
    "reference-missing-input-key": (_ref_missing_input, 2, ["missing input ['features']"]),
    "reference-wrong-feature-count": (_ref_wrong_feature_count, 2, ["input 'features' shape", "[None, 10]"]),
    "reference-wrong-rank": (_ref_wrong_rank, 2, ["output 'output_0' shape", "[None, 1]"]),
    "reference-row-mismatch": (_ref_row_mismatch, 2, ["different row counts"]),
    "reference-random-bytes": (_ref_random_bytes, 2, ["cannot read reference file"]),
    "reference-pickled-objects": (_ref_pickled_objects, 2, ["cannot read reference file", "allow_pickle"]),
    "reference-missing": (_ref_missing, 2, ["reference.npz is missing"]),
    "example-json-invalid": (_example_json_invalid, 2, ["example.json is not valid JSON"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_cli_refuses(case, fresh, tmp_path):
    ex = fresh()
    make, code, words = CASES[case]
    make(ex, tmp_path)
    before = snapshot(tmp_path)
    proc = run_cli(["verify", ex])
    assert_one_line_error(proc, code, *words)
    assert proc.stdout == ""
    assert diff_snapshots(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("case", ["bad-checksum", "symlink-file-outside", "dotdot-path", "reference-pickled-objects"])
def test_python_api_raises_the_same_error(case, fresh, tmp_path):
    from edgekit.parity.verify import load_target

    ex = fresh()
    make, _, words = CASES[case]
    make(ex, tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises((InputError, IntegrityError)) as exc:
        load_target(ex / "exports" / mf.MANIFEST_NAME)
    assert exc.value.exit_code == 2
    assert_one_line_exc(exc.value, *words)
    assert isinstance(exc.value, IntegrityError) == (case == "bad-checksum")
    assert diff_snapshots(before, snapshot(tmp_path)) == []


def test_confined_refuses_every_escape(tmp_path):
    root = tmp_path / "exports"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (root / "link").symlink_to(tmp_path / "secret")
    (root / "sub" / "ok").write_text("y")
    for rel in ("/etc/passwd", "../secret", "sub/../../secret", "link", "", "\\\\server\\share", "C:\\x",
                "sub/../sub/ok"):
        with pytest.raises(InputError):
            mf.confined(root, rel)
    assert mf.confined(root, "sub/ok") == (root / "sub" / "ok").resolve()

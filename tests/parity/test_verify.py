"""edgekit verify: orchestration, statuses, metrics and bad input (fast, TensorFlow-free part).

The example dirs here are built by ``_onnx_example`` (numpy reference, hand-made ONNX
graph, real onnxruntime); the end-to-end run over real exports is test_verify_e2e.py.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from _onnx_example import forward, make_example, weights

from edgekit.cli import run
from edgekit.core.errors import InputError, IntegrityError, UsageError
from edgekit.core.fsutil import sha256_tree
from edgekit.parity.metrics import accuracy_binary
from edgekit.parity.verify import verify
from edgekit.runtime import manifest as mf

CLI = ("edgekit.cli.verify", "edgekit.cli.report")


def _run(argv, capsys):
    code = run(argv, modules=CLI, prog="python -m edgekit.runtime")
    out, err = capsys.readouterr()
    return code, out, err


def test_exact_onnx_export_passes(tmp_path):
    ex = make_example(tmp_path)
    res = verify([ex])
    assert res.passed and len(res.rows) == 1
    row = res.rows[0]
    assert (row["example"], row["format"], row["precision"], row["status"]) == ("toy", "onnx", "fp32", "pass")
    assert row["runtime"].startswith("onnxruntime")
    assert row["max_abs_err"] < 1e-6 and row["atol"] == 1e-5
    assert row["metric"] == "accuracy" and row["metric_keras"] == row["metric_format"] == 1.0
    assert row["size_bytes"] == (ex / "exports" / "model_fp32.onnx").stat().st_size
    assert res.parity["toy__keras__output_0"].shape == (40, 1)
    assert res.parity[f"row{row['id']}__output_0"].shape == (40, 1)


def test_directory_forms_find_the_same_manifest(tmp_path):
    ex = make_example(tmp_path)
    rows = [verify([d]).rows for d in (tmp_path, ex, ex / "exports")]
    keys = [[(r["example"], r["format"], r["precision"], r["status"]) for r in rs] for rs in rows]
    assert keys[0] == keys[1] == keys[2] == [("toy", "onnx", "fp32", "pass")]


def test_metric_drop_beyond_policy_fails_a_loose_variant(tmp_path):
    w, b = weights()
    shifted = b - 0.6
    ex = make_example(tmp_path, variants={"fp32": (w, b), "int8_dynamic": (w, shifted)})
    x = np.load(ex / "reference.npz")["features"][:30]
    y = np.load(ex / "reference.npz")["y_true"]
    acc = accuracy_binary(y, forward(x, w, shifted, "binary"))
    assert acc < 1.0  # the shift flips at least one labelled row
    loose = {("onnx", "int8_dynamic"): {"": {"atol": 1.0, "max_metric_drop": 0.0}}}
    rows = {r["precision"]: r for r in verify([ex], overrides=loose).rows}
    assert rows["fp32"]["status"] == "pass"
    r = rows["int8_dynamic"]
    assert r["status"] == "fail"
    assert r["metric_keras"] == 1.0 and r["metric_format"] == pytest.approx(acc)
    assert r["metric_drop"] == pytest.approx(1.0 - acc)
    assert "accuracy dropped" in r["message"]
    assert r["max_abs_err"] < 1.0  # element-wise it is inside the (loose) bound
    # the same variant passes when the policy allows that drop
    allow = {("onnx", "int8_dynamic"): {"": {"atol": 1.0, "max_metric_drop": 1.0 - acc}}}
    assert {r["precision"]: r["status"] for r in verify([ex], overrides=allow).rows}["int8_dynamic"] == "pass"


def test_value_error_fails_with_the_atol_that_would_pass(tmp_path):
    w, b = weights()
    ex = make_example(tmp_path, variants={"fp32": (w * 1.01, b)})
    r = verify([ex]).rows[0]
    assert r["status"] == "fail"
    assert r["required_atol"] > r["atol"] and "would pass at atol >=" in r["message"]


def test_regression_reports_r2_and_mse(tmp_path):
    ex = make_example(tmp_path, task="regression")
    r = verify([ex]).rows[0]
    assert r["status"] == "pass" and r["metric"] == "r2"
    assert r["metric_keras"] == pytest.approx(r["metric_format"], abs=1e-9)
    assert r["mse_keras"] == pytest.approx(1e-4, rel=1e-3)  # y_true = reference + 0.01


def test_failed_conversions_and_broken_files_are_error_rows(tmp_path):
    ex = make_example(tmp_path, variants={"fp32": weights(), "int8_dynamic": weights()},
                      failures=[{"format": "coreml", "precision": "fp16", "error": "converter exploded"}])
    bad = ex / "exports" / "model_int8_dynamic.onnx"
    bad.write_bytes(b"not an onnx model")
    man = mf.load(ex / "exports")
    data = dict(man.data)
    data["artifacts"] = [dict(a, sha256=sha256_tree(bad), size_bytes=bad.stat().st_size)
                         if a["precision"] == "int8_dynamic" else a for a in data["artifacts"]]
    mf.save(man.path, data)
    rows = {(r["format"], r["precision"]): r for r in verify([ex]).rows}
    assert rows[("onnx", "fp32")]["status"] == "pass"  # the others go on
    assert rows[("onnx", "int8_dynamic")]["status"] == "error"
    assert "onnx" in rows[("onnx", "int8_dynamic")]["message"]
    assert rows[("coreml", "fp16")]["status"] == "error"
    assert "converter exploded" in rows[("coreml", "fp16")]["message"]


def test_formats_filter(tmp_path):
    ex = make_example(tmp_path, failures=[{"format": "tflite", "precision": "int8", "error": "x"}])
    assert [r["format"] for r in verify([ex], formats=["tflite"]).rows] == ["tflite"]
    assert [r["format"] for r in verify([ex], formats=["onnx"]).rows] == ["onnx"]
    with pytest.raises(UsageError, match="unknown format"):
        verify([ex], formats=["caffe"])


# ------------------------------------------------------------------ CLI
def test_cli_writes_reports_and_exit_codes(tmp_path, capsys):
    make_example(tmp_path, "good")
    code, out, err = _run(["verify", str(tmp_path)], capsys)
    assert code == 0, err
    assert "example" in out.splitlines()[0] and "metric Keras → format" in out
    assert "good" in out and "pass" in out
    rows = json.loads((tmp_path / "report.json").read_text())
    assert [r["status"] for r in rows] == ["pass"]
    assert "| good | onnx | fp32 |" in (tmp_path / "report.md").read_text()
    w, b = weights()
    make_example(tmp_path, "bad", variants={"fp32": (w * 1.5, b)})
    js, md = tmp_path / "out" / "r.json", tmp_path / "out" / "r.md"
    code, out, err = _run(["verify", str(tmp_path), "--json", str(js), "--md", str(md)], capsys)
    assert code == 1
    assert sorted(r["status"] for r in json.loads(js.read_text())) == ["fail", "pass"]
    assert md.is_file() and "## Failures" in md.read_text()
    assert not list(tmp_path.glob(".tmp-*")) and not list((tmp_path / "out").glob(".tmp-*"))


def _break(kind, root):
    ex = make_example(root)
    exports = ex / "exports"
    if kind == "missing dir":
        return root / "nope", "directory not found"
    if kind == "no manifest":
        (exports / "manifest.json").unlink()
        return ex, "no export manifest found"
    if kind == "missing reference":
        (ex / "reference.npz").unlink()
        return ex, "reference.npz is missing"
    if kind == "reference lacks output":
        z = dict(np.load(ex / "reference.npz"))
        del z["output_0"]
        np.savez(ex / "reference.npz", **z)
        return ex, "missing output"
    if kind == "reference wrong width":
        z = dict(np.load(ex / "reference.npz"))
        z["features"] = np.zeros((40, 5), np.float32)
        np.savez(ex / "reference.npz", **z)
        return ex, "input 'features' shape"
    if kind == "missing file":
        (exports / "model_fp32.onnx").unlink()
        return ex, "manifest lists a file that does not exist"
    if kind == "tampered file":
        with open(exports / "model_fp32.onnx", "ab") as fh:
            fh.write(b"\0")
        return ex, "checksum mismatch"
    if kind == "bad manifest":
        (exports / "manifest.json").write_text("{not json")
        return ex, "manifest is not valid JSON"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing dir", "no manifest", "missing reference", "reference lacks output",
                                  "reference wrong width", "missing file", "tampered file", "bad manifest"])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, kind):
    target, expected = _break(kind, tmp_path)
    code, out, err = _run(["verify", str(target)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "report.json").exists()


def test_bad_input_errors_are_typed(tmp_path):
    target, _ = _break("tampered file", tmp_path)
    with pytest.raises(IntegrityError):
        verify([target])
    with pytest.raises(InputError):
        verify([tmp_path / "nope"])


def test_python_m_runtime_runs_without_tensorflow(tmp_path):
    make_example(tmp_path)
    code = ("import sys; from edgekit.cli import run; "
            f"rc = run(['verify', {str(tmp_path)!r}], modules=('edgekit.cli.verify',), "
            "prog='python -m edgekit.runtime'); "
            "print('TF' if 'tensorflow' in sys.modules else 'noTF'); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("noTF")
    p = subprocess.run([sys.executable, "-m", "edgekit.runtime", "verify", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("python -m edgekit.runtime: error: directory not found")


def test_tolerance_file_overrides_the_policy(tmp_path, capsys):
    w, b = weights()
    ex = make_example(tmp_path, variants={"fp32": (w * 1.01, b)})
    assert _run(["verify", str(ex)], capsys)[0] == 1
    tol = tmp_path / "tol.json"
    tol.write_text(json.dumps({"onnx/fp32": {"*": {"atol": 0.5}}}))
    code, out, err = _run(["verify", str(ex), "--tolerance", str(tol)], capsys)
    assert code == 0, out + err
    assert json.loads((ex / "report.json").read_text())[0]["atol"] == 0.5
    for bad, match in [("{", "cannot read the tolerance file"),
                       ('{"onnx": {}}', "bad entry in the tolerance file"),
                       ('{"onnx/fp8": {"*": {}}}', "no tolerance policy"),
                       ('{"onnx/fp32": {"*": {"atl": 1}}}', "unknown tolerance field")]:
        tol.write_text(bad)
        code, out, err = _run(["verify", str(ex), "--tolerance", str(tol)], capsys)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1


def test_foreign_export_uses_the_golden_file_next_to_the_manifest(tmp_path):
    ex = make_example(tmp_path)
    (ex / "reference.npz").rename(ex / "exports" / "reference.npz")
    (ex / "example.json").unlink()
    rows = verify([ex / "exports"]).rows
    assert [r["status"] for r in rows] == ["pass"]
    assert rows[0]["metric_keras"] is None  # no labels for a foreign model
    (ex / "exports" / "reference.npz").unlink()
    with pytest.raises(InputError, match="reference.npz is missing and the source SavedModel is not found"):
        verify([ex / "exports"])

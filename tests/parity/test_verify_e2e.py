"""edgekit verify end to end: quick-trained examples exported to every format, real runtimes.

One module-scoped run: copy each quick-trained example (read-only fixture) to tmp, export it
to every registered format and precision with ``edgekit.export.api.export_model``, verify the lot
once; each (example, format, precision, backend) row is then its own test. Also: a model
whose weights were altered after export (checksum fixed up so integrity passes) must fail
parity, and a foreign SavedModel (no reference.npz) gets a golden file computed once.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from edgekit.core.fsutil import sha256_tree, tree_size
from edgekit.export.registry import matrix
from edgekit.parity.verify import REFERENCE_NAME, TFJS_BACKENDS, verify
from edgekit.runtime import manifest as mf

EXAMPLES = ("and_gate", "moons_h3", "regression_mlp")


def _have_node() -> bool:
    try:
        from edgekit.runtime.tfjs import node_executable, node_modules_dir

        node_executable()
        node_modules_dir("wasm")
        return True
    except Exception:  # noqa: BLE001 - any failure means "no usable Node setup"
        return False


HAVE_NODE = _have_node()
# Known defects of other parts, kept visible: {(example, format): reason}, marked strict xfail so
# a fix makes the test fail until the entry is removed. (Empty: the ONNX regression exports,
# fed 'unknown:0' inputs before export commit 0d95f17, now pass.)
KNOWN: dict[tuple[str, str], str] = {}


def _cases():
    for ex in EXAMPLES:
        for fmt, prec in matrix():
            for backend in (TFJS_BACKENDS if fmt == "tfjs" else (None,)):
                marks = []
                if fmt == "tfjs" and not HAVE_NODE:
                    marks.append(pytest.mark.skip(reason="TF.js rows need node and TF.js (edgekit setup-js)"))
                if (ex, fmt) in KNOWN:
                    marks.append(pytest.mark.xfail(strict=True, reason=KNOWN[(ex, fmt)]))
                ident = "-".join(x for x in (ex, fmt, prec.value, backend) if x)
                yield pytest.param(ex, fmt, prec.value, backend, id=ident, marks=marks)


@pytest.fixture(scope="session")
def exported(quick_example, shared_dir):
    """The quick examples copied and exported once per run (file lock: xdist workers share it).

    Read-only for tests: copy an example before changing it.
    """
    import fcntl

    root = shared_dir / "verify-e2e"
    with open(shared_dir / "verify-e2e.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            from edgekit.export.api import export_model

            shutil.rmtree(root, ignore_errors=True)
            for name in EXAMPLES:
                dst = root / name
                shutil.copytree(quick_example(name), dst)
                shutil.rmtree(dst / "exports", ignore_errors=True)
                export_model(dst)
            (root / "done").write_text("ok")
    return root


@pytest.fixture(scope="module")
def verified(exported):
    res = verify(sorted(p for p in exported.iterdir() if p.is_dir()))
    return {(r["example"], r["format"], r["precision"], r.get("backend")): r for r in res.rows}, res


@pytest.mark.parametrize("example,fmt,precision,backend", list(_cases()))
def test_every_variant_passes_parity(verified, example, fmt, precision, backend):
    rows, _ = verified
    row = rows.get((example, fmt, precision, backend))
    assert row is not None, f"no row for {example} {fmt} {precision} {backend}: {sorted(rows)}"
    assert row["status"] == "pass", row["message"]
    assert row["max_abs_err"] is not None and row["max_abs_err"] <= row["atol"]
    assert row["metric_keras"] is not None and row["metric_format"] is not None
    if backend:
        assert backend in row["runtime"]
    if fmt == "coreml":
        assert "evaluator" in row["runtime"] or "MLModel" in row["runtime"]


def test_verify_row_count_and_row_times(verified):
    rows, res = verified
    expected = sum(2 if f == "tfjs" else 1 for f, _ in matrix()) * len(EXAMPLES)
    assert len(rows) == expected
    # speed is a benchmark figure (README), not an assertion: check that each row's time is recorded
    assert all(r["seconds"] is not None and r["seconds"] >= 0 for r in rows.values())


def _patch_onnx(path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)) if t.dims else 1)
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] += 0.5 * (np.abs(arr).max() + 1)
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(path))


def _patch_tflite(path):
    """Rewrite the bytes of the largest float32 constant tensor inside the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    best = None
    for d in it.get_tensor_details():
        if np.dtype(d["dtype"]) != np.float32:
            continue
        try:
            arr = it.get_tensor(d["index"])
        except ValueError:
            continue
        if arr.size > 1 and np.any(arr) and (best is None or arr.size > best.size):
            best = arr.copy()
    data = path.read_bytes()
    old = best.tobytes()
    assert data.count(old) == 1
    new = best.copy()
    new.flat[0] += 0.5 * (np.abs(new).max() + 1)
    path.write_bytes(data.replace(old, new.tobytes()))


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_altered_weights_fail_parity(exported, tmp_path, fmt):
    ex = tmp_path / "and_gate"
    shutil.copytree(exported / "and_gate", ex)
    man = mf.load(ex / "exports")
    art = next(a for a in man.artifacts if a.format == fmt and a.precision == "fp32")
    path = art.resolve(man.root)
    (_patch_onnx if fmt == "onnx" else _patch_tflite)(path)
    data = dict(man.data)
    data["artifacts"] = [dict(a, sha256=sha256_tree(path), size_bytes=tree_size(path))
                         if a is art.raw else a for a in data["artifacts"]]
    mf.save(man.path, data)
    rows = {(r["format"], r["precision"]): r for r in verify([ex], formats=[fmt]).rows}
    bad = rows[(fmt, "fp32")]
    assert bad["status"] == "fail", bad
    assert "exceeds tolerance" in bad["message"] and bad["required_atol"] > bad["atol"]
    others = [r["status"] for k, r in rows.items() if k != (fmt, "fp32")]
    assert others and set(others) == {"pass"}


def test_foreign_savedmodel_gets_a_golden_file_once(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from edgekit.export.api import export_model

    keras.utils.set_random_seed(3)
    zeta, alpha = keras.Input((3,), name="zeta"), keras.Input((5,), name="alpha")
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([zeta, alpha]))
    model = keras.Model([zeta, alpha], [keras.layers.Dense(1, name="reg")(h),
                                        keras.layers.Dense(3, activation="softmax", name="cls")(h)])
    sm = tmp_path / "foreign"
    model.export(str(sm))
    calib = tmp_path / "calib.npz"
    np.savez(calib, zeta=np.zeros((8, 3), np.float32), alpha=np.zeros((8, 5), np.float32))
    report = export_model(sm, formats=["tflite", "onnx"], precisions=["fp32"], calibration=calib)
    first = verify([report.out_dir])
    golden = report.out_dir / REFERENCE_NAME
    assert golden.is_file()
    with np.load(golden) as z:
        assert {"zeta", "alpha"} <= set(z.files) and len(z.files) == 4
    assert [r["status"] for r in first.rows] == ["pass", "pass"], [r["message"] for r in first.rows]
    assert all(len(r["outputs"]) == 2 and r["metric_keras"] is None for r in first.rows)
    mtime = golden.stat().st_mtime_ns
    again = verify([report.out_dir])
    assert golden.stat().st_mtime_ns == mtime  # computed once, reused
    assert [r["max_abs_err"] for r in again.rows] == [r["max_abs_err"] for r in first.rows]
    assert json.loads((report.out_dir / "manifest.json").read_text())["source"]["example"] is None


def test_cli_verify_of_core_ml_files_never_imports_tensorflow(exported, tmp_path):
    import subprocess
    import sys

    code = ("import sys; from edgekit.cli import run; "
            f"rc = run(['verify', {str(exported / 'and_gate')!r}, '--formats', 'coreml', 'onnx', "
            f"'--json', {str(tmp_path / 'r.json')!r}, '--md', {str(tmp_path / 'r.md')!r}], "
            "modules=('edgekit.cli.verify',), prog='python -m edgekit.runtime'); "
            "print('TF' if 'tensorflow' in sys.modules else 'noTF'); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().endswith("noTF")
    rows = json.loads((tmp_path / "r.json").read_text())
    assert sorted(r["format"] for r in rows) == ["coreml", "coreml", "onnx", "onnx"]
    assert all(r["status"] == "pass" for r in rows)

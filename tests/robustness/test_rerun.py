"""Re-runs lose nothing: a partial export keeps the other variants byte for byte, a partial verify
keeps the other rows, ``--clean`` / ``--fresh`` start over, a changed source marks the kept
variants stale (and verify says so), and two runs on one export directory never mix a manifest.

Real exports and real runtimes throughout: the robustness example (``regression_mlp``, every format
in fp32) and, for a changed source, two tiny tf.Module SavedModels with different weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _robust import EDGEKIT, ENV, REPO, assert_one_line_error, diff_snapshots, snapshot

from edgekit.cli import run
from edgekit.runtime import manifest as mf


def _without(snap: dict, *prefixes: str) -> dict:
    return {k: v for k, v in snap.items() if not k.startswith(prefixes)}


def _entries(man: mf.Manifest) -> dict:
    return {(a["format"], a["precision"]): a for a in man.data["artifacts"]}


def _rows(report: Path) -> dict:
    return {(r["format"], r["precision"], r["runtime"], r.get("backend")): r
            for r in json.loads(report.read_text())}


def _lin_savedmodel(dest: Path, seed: int) -> Path:
    """A SavedModel y = sigmoid(x W + b) with weights from ``seed`` (no Keras)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    class Lin(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(rng.normal(size=(4, 2)).astype("float32"))
            self.b = tf.Variable(rng.normal(size=(2,)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.sigmoid(tf.matmul(x, self.w) + self.b)}

    m = Lin()
    tf.saved_model.save(m, str(dest), signatures={"serving_default": m.serve})
    return dest


def test_partial_export_and_verify_keep_the_rest_then_clean_and_fresh_start_over(fresh):
    """The fast end-to-end check: export one variant into a full export, verify one format into a
    report of two; every other file, manifest entry and row stays byte for byte."""
    from edgekit.export.api import export_model
    from edgekit.parity.verify import load_target

    ex = fresh()
    out = ex / "exports"
    before, man_before = snapshot(out), mf.load(out)
    report = export_model(ex, formats=["onnx"], precisions=["fp32"])
    assert report.ok and [(r.format, r.precision) for r in report.results] == [("onnx", "fp32")]
    after, man_after = snapshot(out), mf.load(out)
    # nothing outside onnx/ changed, no file is new or gone but the manifest
    assert diff_snapshots(_without(before, "onnx/", "manifest.json"), _without(after, "onnx/", "manifest.json")) == []
    assert sorted(_entries(man_after)) == sorted(_entries(man_before))
    for key, entry in _entries(man_before).items():
        if key != ("onnx", "fp32"):
            assert _entries(man_after)[key] == entry, key       # kept entries unchanged, not stale
    assert _entries(man_after)[("onnx", "fp32")]["exported"] >= _entries(man_before)[("onnx", "fp32")]["exported"]
    assert man_after.data["kept"] == len(man_before.artifacts) - 1
    load_target(out / mf.MANIFEST_NAME)                          # every sha256 checks out

    # verify two formats, then one: the other format's rows stay as they were
    assert run(["verify", str(ex), "--formats", "tflite", "onnx"]) == 0
    first = _rows(ex / "report.json")
    assert {k[0] for k in first} == {"tflite", "onnx"}
    assert all(r["sha256"] and r["measured"] for r in first.values())
    assert run(["verify", str(ex), "--formats", "onnx"]) == 0
    second = _rows(ex / "report.json")
    assert sorted(second) == sorted(first)
    for key, row in first.items():
        if key[0] == "tflite":
            assert {**second[key], "id": None} == {**row, "id": None}, key
    md = (ex / "report.md").read_text()
    assert "| tflite |" in md and "| onnx |" in md and md.splitlines()[2].startswith("2 rows: 2 pass")

    # --fresh: this run's rows only; --clean: only this run's variants
    assert run(["verify", str(ex), "--formats", "onnx", "--fresh"]) == 0
    assert {k[0] for k in _rows(ex / "report.json")} == {"onnx"}
    assert run(["export", str(ex), "--formats", "onnx", "--precisions", "fp32", "--clean"]) == 0
    assert [(a.format, a.precision) for a in mf.load(out).artifacts] == [("onnx", "fp32")]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "onnx"]
    assert not [p for p in ex.iterdir() if p.name.startswith((".tmp-", "exports.lock"))]


def test_changed_file_makes_a_kept_row_stale(fresh):
    """A row whose file was re-exported since it was measured is never shown as current."""
    from edgekit.export.api import export_model

    ex = fresh()
    assert run(["verify", str(ex), "--formats", "tflite", "onnx"]) == 0
    # re-export ONNX with another opset: a different file
    assert export_model(ex, formats=["onnx"], precisions=["fp32"], opset=13).ok
    assert run(["verify", str(ex), "--formats", "tflite"]) == 0
    rows = _rows(ex / "report.json")
    onnx = [r for k, r in rows.items() if k[0] == "onnx"]
    assert onnx and all(r["status"] == "stale" and "changed since this row was measured" in r["message"]
                        for r in onnx)
    assert all(r["status"] == "pass" for k, r in rows.items() if k[0] == "tflite")


def test_changed_source_marks_kept_variants_stale_and_verify_says_so(tmp_path):
    from edgekit.export.api import export_model

    a, b = _lin_savedmodel(tmp_path / "a", 0), _lin_savedmodel(tmp_path / "b", 1)
    out = tmp_path / "exports"
    assert export_model(a, out, formats=["tflite", "onnx"], precisions=["fp32"]).ok
    kept_sha = _entries(mf.load(out))[("tflite", "fp32")]["sha256"]
    assert export_model(b, out, formats=["onnx"], precisions=["fp32"]).ok
    entries = _entries(mf.load(out))
    tfl = entries[("tflite", "fp32")]
    assert tfl["stale"] is True and "exported from another source" in tfl["stale_reason"]
    assert tfl["sha256"] == kept_sha and tfl["source_fingerprint"] != entries[("onnx", "fp32")]["source_fingerprint"]
    assert "stale" not in entries[("onnx", "fp32")]
    proc = subprocess.run([str(EDGEKIT), "verify", str(out)], capture_output=True, text=True, cwd=REPO, env=ENV,
                          timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr           # a stale row is not a pass
    rows = _rows(out / "report.json")
    (tfl_row,) = [r for k, r in rows.items() if k[0] == "tflite"]
    (onnx_row,) = [r for k, r in rows.items() if k[0] == "onnx"]
    assert tfl_row["status"] == "stale" and "exported from another source" in tfl_row["message"]
    assert onnx_row["status"] == "pass"
    assert "1 stale" in proc.stdout
    # the same source again: the tflite file is current once more (re-exported), nothing stale
    assert export_model(b, out, formats=["tflite"], precisions=["fp32"]).ok
    assert not [e for e in mf.load(out).data["artifacts"] if e.get("stale")]


def test_keras_source_keeps_its_model_and_golden_file_unless_it_changed(tmp_path):
    """A .keras source writes source/ (model.keras, saved_model) and reference.npz into the export:
    a partial re-export of the same file keeps them byte for byte; a changed file replaces them
    and marks the kept variants stale."""
    import keras

    from edgekit.export.api import export_model
    from edgekit.parity.verify import load_target

    def save(seed: int) -> Path:
        keras.utils.set_random_seed(seed)
        m = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(1)])
        m.save(tmp_path / "m.keras")
        return tmp_path / "m.keras"

    out = tmp_path / "exports"
    assert export_model(save(0), out, formats=["tflite", "onnx"], precisions=["fp32"]).ok
    before = snapshot(out)
    assert export_model(tmp_path / "m.keras", out, formats=["onnx"], precisions=["fp32"]).ok
    after = snapshot(out)
    assert diff_snapshots(_without(before, "onnx/", "manifest.json"), _without(after, "onnx/", "manifest.json")) == []
    assert not [e for e in mf.load(out).data["artifacts"] if e.get("stale")]
    load_target(out / mf.MANIFEST_NAME)                     # the kept SavedModel matches source.fingerprint

    assert export_model(save(1), out, formats=["onnx"], precisions=["fp32"]).ok
    changed = diff_snapshots(before, snapshot(out))
    assert "changed: reference.npz" in changed and "changed: source/model.keras" in changed
    assert "changed: tflite/model_fp32.tflite" not in changed
    entries = _entries(mf.load(out))
    assert entries[("tflite", "fp32")]["stale"] is True and "stale" not in entries[("onnx", "fp32")]
    target = load_target(out / mf.MANIFEST_NAME)
    assert target.saved_model is not None                    # the new SavedModel, its fingerprint recorded


def test_live_model_is_the_same_source_until_its_weights_change(tmp_path):
    """A live keras.Model is identified by its config and weights (its SavedModel re-export differs
    byte-wise from run to run): the same model keeps the other variants current, new weights make
    them stale."""
    import keras

    from edgekit.export.api import export_model

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])
    out = tmp_path / "exports"
    assert export_model(m, out, formats=["tflite"], precisions=["fp32"]).ok
    assert export_model(m, out, formats=["onnx"], precisions=["fp32"]).ok
    assert not [e for e in mf.load(out).data["artifacts"] if e.get("stale")]
    m.set_weights([w * 2 for w in m.get_weights()])
    assert export_model(m, out, formats=["onnx"], precisions=["fp32"]).ok
    assert [e["format"] for e in mf.load(out).data["artifacts"] if e.get("stale")] == ["tflite"]


def test_interrupted_swap_leaves_a_manifest_consistent_with_its_files(tmp_path, monkeypatch):
    """A Ctrl-C between two swaps of a partial export (the renames after converting): the manifest
    lists only files that are there and match their sha256; a re-run brings everything back."""
    from edgekit.export import partial
    from edgekit.export.api import export_model
    from edgekit.parity.verify import load_target

    src, out = _lin_savedmodel(tmp_path / "a", 0), tmp_path / "exports"
    assert export_model(src, out, formats=["tflite", "onnx"], precisions=["fp32"]).ok
    real, calls = partial.swap_in, []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(partial, "swap_in", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(src, out, formats=["tflite", "onnx"], precisions=["fp32"], opset=13)
    monkeypatch.setattr(partial, "swap_in", real)
    target = load_target(out / mf.MANIFEST_NAME)            # every listed file exists and matches
    # the first swapped variant is listed with its new file; the one being swapped is not listed
    assert [a.format for a, _ in target.artifacts] == ["tflite"] and len(calls) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", "exports.lock"))]
    assert export_model(src, out, formats=["tflite", "onnx"], precisions=["fp32"]).ok
    assert sorted(a.format for a, _ in load_target(out / mf.MANIFEST_NAME).artifacts) == ["onnx", "tflite"]


def test_merge_rules_for_earlier_rows(tmp_path):
    """report.json merging, row by row: same key -> replaced in place; file unchanged -> kept as is;
    file re-exported -> stale; variant gone -> dropped; conversion failure still listed -> kept;
    a row that never recorded its manifest (an older report) -> stale; arrays follow their rows."""
    from edgekit.report.files import merge_reports, write_reports

    man = tmp_path / "exports" / mf.MANIFEST_NAME
    arts = [{"format": f, "precision": "fp32", "path": f"{f}/m", "size_bytes": 1, "sha256": sha, "inputs": [],
             "outputs": []} for f, sha in (("tflite", "t1"), ("onnx", "o2"), ("tfjs", "j1"))]
    mf.save(man, {"source": {}, "artifacts": arts, "failures": [{"format": "coreml", "precision": "fp16",
                                                                  "error": "x"}]})

    def row(fmt, sha, status="pass", path="", manifest=str(man), rid=0, prec="fp32"):
        return {"id": rid, "example": "e", "format": fmt, "precision": prec, "runtime": fmt, "backend": None,
                "status": status, "max_abs_err": 0.0, "atol": 1.0, "metric": None, "metric_keras": None,
                "metric_format": None, "size_bytes": 1, "path": path or f"{fmt}/m", "sha256": sha,
                "manifest": manifest, "measured": "2026-01-01T00:00:00+00:00", "message": ""}

    old = [row("tflite", "t1", rid=0), row("onnx", "o1", rid=1), row("coreml", None, "error", rid=2, prec="fp16"),
           row("tfjs", "j1", rid=3, manifest=None), row("gone", "g", rid=4), row("tfjs", "j1", rid=5, path="x/y")]
    old[2]["path"] = None
    parity = {f"row{i}__y": np.full(2, i) for i in range(6)}
    write_reports(old, {"e__keras__y": np.zeros(2), **parity}, tmp_path / "report.json", tmp_path / "report.md")
    new = [row("tflite", "t1", rid=0)]
    new[0]["max_abs_err"] = 0.5
    rows, arrays = merge_reports(tmp_path / "report.json", new, {"row0__y": np.full(2, 9)})
    got = [(r["format"], r["status"], r["max_abs_err"]) for r in rows]
    assert got == [("tflite", "pass", 0.5), ("onnx", "stale", 0.0), ("coreml", "error", 0.0), ("tfjs", "stale", 0.0)]
    assert "changed since this row was measured" in rows[1]["message"]
    assert "measured before edgekit recorded" in rows[3]["message"]
    assert [r["id"] for r in rows] == [0, 1, 2, 3]
    assert [int(arrays[f"row{i}__y"][0]) for i in range(4)] == [9, 1, 2, 3] and "e__keras__y" in arrays
    assert merge_reports(tmp_path / "report.json", new, {}, fresh=True)[0] == [{**new[0], "id": 0}]


def test_second_run_refuses_in_one_line_while_the_first_holds_the_lock(fresh):
    from edgekit.core.lock import lock_path, read_owner, run_lock

    ex = fresh()
    before = snapshot(ex / "exports")
    with run_lock(ex / "exports", command="test"):
        owner = read_owner(lock_path((ex / "exports").resolve()))
        assert owner["pid"] == os.getpid() and owner["command"] == "test" and owner["started"]
        proc = subprocess.run([str(EDGEKIT), "export", str(ex), "--formats", "onnx", "--precisions", "fp32"],
                              capture_output=True, text=True, cwd=REPO, env={**ENV, "EDGEKIT_LOCK_WAIT": "0"},
                              timeout=300)
        assert_one_line_error(proc, 2, "is in use by", f"pid {os.getpid()}", "EDGEKIT_LOCK_WAIT")
        vproc = subprocess.run([str(EDGEKIT), "verify", str(ex)], capture_output=True, text=True, cwd=REPO,
                               env={**ENV, "EDGEKIT_LOCK_WAIT": "0"}, timeout=300)
        assert_one_line_error(vproc, 2, "is in use by")
        eproc = subprocess.run([str(EDGEKIT), "explain", str(ex)], capture_output=True, text=True, cwd=REPO,
                               env={**ENV, "EDGEKIT_LOCK_WAIT": "0"}, timeout=300)
        assert_one_line_error(eproc, 2, "is in use by")
    assert snapshot(ex / "exports") == before
    assert not (ex / "report.json").exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    from edgekit.core.errors import OutputError
    from edgekit.core.lock import lock_path, read_owner, run_lock

    d = tmp_path / "exports"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock_path(d).write_text(json.dumps({"pid": dead.pid, "host": "here", "started": "then"}))
    with run_lock(d, wait=0):
        assert read_owner(lock_path(d))["pid"] == os.getpid()
        with pytest.raises(OutputError, match="in use by"), run_lock(d, wait=0):
            pass                                                 # a second holder, even in-process
    assert not lock_path(d).exists()


def test_a_waiting_run_proceeds_once_the_first_is_done(tmp_path):
    import threading

    from edgekit.core.lock import run_lock

    d, order = tmp_path / "exports", []
    held, release = threading.Event(), threading.Event()

    def first():
        with run_lock(d, wait=0, command="first"):
            order.append("first")
            held.set()
            release.wait(60)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    assert held.wait(60)
    threading.Timer(0.5, release.set).start()
    with run_lock(d, wait=120, command="second"):            # waits for the first to finish
        order.append("second")
    t.join(60)
    assert order == ["first", "first done", "second"]


@pytest.mark.slow  # two exporting processes one after the other: ~32 s on 2 loaded cores
def test_two_concurrent_exports_wait_for_each_other_and_never_mix_the_manifest(fresh):
    """Both processes start while the test holds the lock, so they really contend once it is
    released: one converts while the other waits; the final manifest lists both runs' variants,
    validates, and every file matches its sha256."""
    from edgekit.core.lock import run_lock
    from edgekit.parity.verify import load_target

    ex = fresh()
    env = {**ENV, "EDGEKIT_LOCK_WAIT": "600"}
    procs = []
    with run_lock(ex / "exports", command="test"):
        for fmts in ("tflite", "onnx"):
            procs.append(subprocess.Popen([str(EDGEKIT), "export", str(ex), "--formats", fmts, "--precisions",
                                           "fp32"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        deadline = time.monotonic() + 120                        # both reached the lock (or failed)
        while time.monotonic() < deadline and not all(p.poll() is not None for p in procs):
            if (ex / "exports.lock").is_file() and all(_waiting(p) for p in procs):
                break
            time.sleep(0.2)
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    man = mf.load(ex / "exports")
    listed = [(a.format, a.precision) for a in man.artifacts]
    assert len(listed) == len(set(listed)) and {("tflite", "fp32"), ("onnx", "fp32"), ("coreml", "fp32"),
                                               ("tfjs", "fp32")} <= set(listed)
    target = load_target(ex / "exports" / mf.MANIFEST_NAME)      # every listed file matches its sha256
    assert len(target.artifacts) == len(listed)
    on_disk = {p.relative_to(ex / "exports").parts[0] for p in (ex / "exports").iterdir()}
    assert on_disk == {"manifest.json", "tflite", "onnx", "coreml", "tfjs"}
    assert not [p for p in ex.iterdir() if p.name.startswith(".tmp-")]


def _waiting(proc: subprocess.Popen) -> bool:
    """The process has an open fd on the lock file (it is polling it) — Linux /proc."""
    try:
        fds = os.listdir(f"/proc/{proc.pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{proc.pid}/fd/{fd}").endswith("exports.lock"):
                return True
        except OSError:
            continue
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

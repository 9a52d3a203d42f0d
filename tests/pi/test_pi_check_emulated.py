"""The emulated Raspberry Pi run end to end (slow; root): the same as ``make pi-check`` on a quick export.

Exports moons_h3 to TFLite and ONNX, verifies it on the host, swaps one TFLite file for one that
needs the Flex delegate (a real SELECT_TF_OPS conversion, flagged in the manifest as the exporter
does), then runs scripts/pi_check.py: every other variant passes inside the emulated aarch64 root,
the Flex file gets a row saying the Pi runtime cannot load it, the rows land in report.html, and
nothing stays mounted. Uses the default root cache (~/.cache/edgekit/pi-rootfs): the first run
builds it (minutes), later runs reuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pi_check
import pi_root
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    os.geteuid() != 0, reason="the emulated root needs root (debootstrap, chroot, mounts)")]


def _flex_tflite() -> bytes:
    """features (None, 2) -> output_0 through Softsign, kept as a Flex op (SELECT_TF_OPS)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="features")])
    def f(features):
        return {"output_0": tf.math.softsign(features)}

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    return conv.convert()


def test_pi_check_passes_every_variant_and_refuses_flex(tmp_path, quick_example):
    from edgekit.core.fsutil import sha256_file
    from edgekit.export.api import export_model
    from edgekit.parity.verify import verify
    from edgekit.report.files import load_reports, write_reports

    art = tmp_path / "art"
    shutil.copytree(quick_example("moons_h3"), art / "moons_h3")
    exports = art / "moons_h3" / "exports"
    export_model(art / "moons_h3", formats=["tflite", "onnx"])
    # one TFLite variant becomes a file that needs the Flex delegate, listed as the exporter lists it
    flex = _flex_tflite()
    assert b"FlexSoftsign" in flex  # the custom op code a Flex op is stored under
    man_path = exports / "manifest.json"
    doc = json.loads(man_path.read_text())
    entry = next(a for a in doc["artifacts"] if a["format"] == "tflite" and a["precision"] == "fp16")
    (exports / entry["path"]).write_bytes(flex)
    entry.update(sha256=sha256_file(exports / entry["path"]), size_bytes=len(flex), select_tf_ops=True,
                 flex_ops=["Softsign"])
    man_path.write_text(json.dumps(doc, indent=1))
    host = verify([art], formats=["tflite", "onnx"])
    write_reports(host.rows, host.parity, art / "report.json", art / "report.md")

    r = subprocess.run([sys.executable, str(pi_check.REPO / "scripts" / "pi_check.py"), "--artifacts", str(art)],
                       capture_output=True, text=True)
    if "SKIPPED" in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 1, r.stdout + r.stderr  # the Flex row is an error
    rows, _ = load_reports(art / "report.json")
    pi = [x for x in rows if x.get("device")]
    n_variants = len([a for a in doc["artifacts"] if a["format"] in ("tflite", "onnx")])
    assert len(pi) == n_variants and len(rows) == len(host.rows) + n_variants
    flex_rows = [x for x in pi if x["format"] == "tflite" and x["precision"] == "fp16"]
    assert len(flex_rows) == 1 and flex_rows[0]["status"] == "error"
    assert "cannot load it" in flex_rows[0]["message"] and "Softsign" in flex_rows[0]["message"]
    others = [x for x in pi if x is not flex_rows[0]]
    assert others and all(x["status"] == "pass" for x in others), [(x["format"], x["precision"], x["message"])
                                                                   for x in others if x["status"] != "pass"]
    assert {x["runtime"] for x in others} == {"ai-edge-litert 2.3.0 aarch64 (emulated cortex-a72)",
                                              "onnxruntime 1.32.0 CPU aarch64 (emulated cortex-a72)"}
    assert all(x["seconds"] is None and x["emulated_seconds"] is not None for x in others)
    assert all(x.get("vs_host_max_abs_diff") is not None for x in others)
    page = (art / "report.html").read_text()
    assert page.count("aarch64 (emulated cortex-a72)") >= n_variants
    assert "outputs identical to the host" in r.stdout and "emulated time, not Pi latency" in r.stdout
    cache = Path.home() / ".cache" / "edgekit" / "pi-rootfs"
    assert pi_root.mounts_under(cache) == []
    assert not [p for p in (cache / "runs").glob("run-*") if p.is_dir()]  # the run directory is removed


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_mid_run_leaves_nothing_mounted(tmp_path, quick_example, sig):
    """Ctrl-C (SIGINT) or SIGTERM while the device side runs inside the root: exit 130, mounts undone,
    the run directory removed."""
    import signal

    from edgekit.export.api import export_model

    art = tmp_path / "art"
    shutil.copytree(quick_example("moons_h3"), art / "moons_h3")
    export_model(art / "moons_h3", formats=["tflite"], precisions=["fp32"])
    cache = Path.home() / ".cache" / "edgekit" / "pi-rootfs"
    proc = subprocess.Popen([sys.executable, str(pi_check.REPO / "scripts" / "pi_check.py"), "--artifacts", str(art)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "SKIPPED" in line:
            proc.wait()
            pytest.skip(line.strip())
        if "device install" in line:  # the root's mounts are up and the verify is starting
            break
    root_mounts = pi_root.mounts_under(pi_root.root_dir(cache))
    proc.send_signal(getattr(signal, sig))
    rest = proc.stdout.read()
    proc.wait(timeout=120)
    assert len(root_mounts) >= 4, "".join(seen)  # proc, cpuinfo, sysfs CPU lists, /dev, the run dir
    assert proc.returncode == 130, "".join(seen) + rest
    assert "mounts undone" in rest
    assert pi_root.mounts_under(cache) == []
    assert not [p for p in (cache / "runs").glob("run-*") if p.is_dir()]
    assert not (art / "report.json").exists()  # nothing half-written

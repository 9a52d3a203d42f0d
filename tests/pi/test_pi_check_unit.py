"""pi-check's host side without emulation: row labels, Flex refusal, report merge, mounts undone, skips.

The emulated run itself is ``make pi-check`` and tests/pi/test_pi_check_emulated.py (slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pi_check
import pi_root
import pytest

VERSIONS = {"python": "3.11.2", "machine": "aarch64", "ai-edge-litert": "2.3.0", "onnxruntime": "1.32.0",
            "numpy": "2.1.3", "edgekit": "0.2.0"}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")


def _row(i: int, fmt: str = "tflite", precision: str = "fp32", status: str = "pass", message: str = "",
         runtime: str = "ai-edge-litert 2.3.0", **extra) -> dict:
    return {"id": i, "example": "moons_h3", "format": fmt, "precision": precision, "runtime": runtime,
            "status": status, "message": message, "max_abs_err": 0.0, "atol": 1e-5, "metric": "accuracy",
            "metric_keras": 0.85, "metric_format": 0.85, "size_bytes": 2000, "seconds": 0.5,
            "path": f"{fmt}/model_{precision}.{fmt}", "example_dir": "/mnt/edgekit/art/moons_h3",
            "outputs": [{"name": "output_0", "max_abs_err": 0.0}], **extra}


def test_rows_are_labelled_aarch64_emulated_and_keep_no_pi_timing(tmp_path):
    rows = pi_check.relabel([_row(0), _row(1, "onnx", runtime="onnxruntime 1.32.0 CPU")], "/mnt/edgekit/art",
                            tmp_path, VERSIONS, "4", {})
    assert [r["runtime"] for r in rows] == ["ai-edge-litert 2.3.0 aarch64 (emulated cortex-a72)",
                                            "onnxruntime 1.32.0 CPU aarch64 (emulated cortex-a72)"]
    assert all(r["seconds"] is None and r["emulated_seconds"] == 0.5 for r in rows)
    assert rows[0]["example_dir"] == str(tmp_path.resolve() / "moons_h3")
    assert "Raspberry Pi 4" in rows[0]["device"] and "qemu-user cortex-a72" in rows[0]["device"]
    pi5 = pi_check.relabel([_row(0)], "/mnt/edgekit/art", tmp_path, VERSIONS, "5", {})
    assert pi5[0]["runtime"].endswith("(emulated cortex-a76)")


def test_flex_files_get_a_row_saying_the_pi_cannot_load_them(tmp_path):
    # flagged by the manifest (the exporter's select_tf_ops / flex_ops) ...
    flagged = pi_check.relabel([_row(0, status="pass")], "/mnt/edgekit/art", tmp_path, VERSIONS, "4",
                               {("moons_h3", "fp32"): ["Softsign"]})[0]
    assert flagged["status"] == "error"
    assert "Flex delegate" in flagged["message"] and "Softsign" in flagged["message"]
    assert "cannot load it" in flagged["message"]
    # ... or found by LiteRT itself refusing the custom op (its real message)
    said = ("Select TensorFlow op(s), included in the given model, is(are) not supported by this interpreter. "
            "Node number 0 (FlexSoftsign) failed to prepare.")
    found = pi_check.relabel([_row(1, status="error", message=said)], "/mnt/edgekit/art", tmp_path, VERSIONS,
                             "4", {})[0]
    assert found["status"] == "error" and "cannot load it" in found["message"] and "FlexSoftsign" in found["message"]
    # an ONNX error or a plain parity failure is not relabelled as Flex
    other = pi_check.relabel([_row(2, "onnx", status="fail", message="max abs err 0.2 exceeds tolerance")],
                             "/mnt/edgekit/art", tmp_path, VERSIONS, "4", {})[0]
    assert other["status"] == "fail" and "Flex" not in other["message"]


def test_merge_replaces_earlier_pi_rows_renumbers_ids_and_compares_with_the_host(tmp_path):
    from edgekit.report.files import load_reports, write_reports

    art = tmp_path / "art"
    art.mkdir()
    host = [_row(0), _row(1, "onnx", runtime="onnxruntime 1.32.0 CPU")]
    for r in host:
        r["example_dir"] = str(art / "moons_h3")
    y = np.linspace(0, 1, 16, dtype=np.float32).reshape(8, 2)
    host_parity = {"moons_h3__keras__output_0": y, "row0__output_0": y, "row1__output_0": y + 1e-7}
    write_reports(host, host_parity, art / "report.json", art / "report.md")

    def device_run():
        rows = pi_check.relabel([_row(0), _row(1, "onnx", runtime="onnxruntime 1.32.0 CPU")],
                                "/mnt/edgekit/art", art, VERSIONS, "4", {})
        return rows, {"moons_h3__keras__output_0": y, "row0__output_0": y, "row1__output_0": y}

    for _ in range(2):  # a second pi-check replaces the first one's rows
        rows, parity = device_run()
        _, html, (same, compared) = pi_check.merge_report(art, rows, parity)
    merged, merged_parity = load_reports(art / "report.json")
    assert len(merged) == 4 and [r["id"] for r in merged] == [0, 1, 2, 3]
    assert [bool(r.get("device")) for r in merged] == [False, False, True, True]
    assert (same, compared) == (1, 2)  # tflite identical; onnx 1e-7 off the host's
    assert merged[2]["vs_host_max_abs_diff"] == 0.0 and 0 < merged[3]["vs_host_max_abs_diff"] < 1e-6
    assert sorted(k for k in merged_parity if k.startswith("row")) == [f"row{i}__output_0" for i in range(4)]
    page = html.read_text()
    assert "ai-edge-litert 2.3.0 aarch64 (emulated cortex-a72)" in page
    pi5 = pi_check.relabel([_row(0)], "/mnt/edgekit/art", art, VERSIONS, "5", {})  # another device: kept beside
    pi_check.merge_report(art, pi5, {"row0__output_0": y})
    assert [r["runtime"].split("(")[-1] for r in load_reports(art / "report.json")[0][2:]] == [
        "emulated cortex-a72)", "emulated cortex-a72)", "emulated cortex-a76)"]
    assert "onnxruntime 1.32.0 CPU aarch64 (emulated cortex-a72)" in (art / "report.md").read_text()


def test_default_mirror_reads_the_hosts_apt_source(monkeypatch):
    monkeypatch.setenv("PI_MIRROR", "http://mirror.example/debian")
    assert pi_root.default_mirror() == "http://mirror.example/debian"
    monkeypatch.delenv("PI_MIRROR")
    assert pi_root.default_mirror().startswith("http")


def test_bad_artifacts_are_refused_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(pi_check.REPO / "scripts" / "pi_check.py"), "--artifacts",
                        str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "directory not found" in r.stderr
    assert "Traceback" not in r.stderr


@needs_root
def test_not_root_is_a_skip_with_the_reason():
    """Run as an unprivileged user (setpriv, uid 65534), for real: a clear skip, exit 0."""
    import shutil
    import tempfile

    script = pi_check.REPO / "scripts" / "pi_check.py"
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r", str(script)],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"uid 65534 cannot read {script} (the checkout sits under a directory only root can enter, "
                    "e.g. a 0700 mktemp dir)")
    d = Path(tempfile.mkdtemp(prefix="pi-skip-"))
    try:
        (d / "art" / "ex" / "exports").mkdir(parents=True)
        (d / "art" / "ex" / "exports" / "manifest.json").write_text("{}")
        for p in [d, *d.rglob("*")]:
            os.chmod(p, 0o755)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                            str(pi_check.REPO / "scripts" / "pi_check.py"), "--artifacts", str(d / "art"),
                            "--cache", str(d / "cache")], capture_output=True, text=True, cwd=d)
    finally:
        shutil.rmtree(d)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "pi-check: SKIPPED: needs root (debootstrap, chroot and mounts); running as uid 65534"


@needs_root
def test_mounts_are_undone_on_an_exception(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "root" / "mnt"
    src.mkdir()
    (src / "f").write_text("x")
    with pytest.raises(RuntimeError, match="boom"):
        with pi_root.Mounts(tmp_path / "root") as m:
            m.bind(src, dst, readonly=True)
            assert (dst / "f").read_text() == "x"
            assert pi_root.mounts_under(tmp_path / "root") == [str(dst.resolve())]
            raise RuntimeError("boom")
    assert pi_root.mounts_under(tmp_path) == []


@needs_root
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_mounts_are_undone_when_the_process_is_signalled(tmp_path, how):
    """A real child process mounts, then gets a signal mid-run: it unwinds and unmounts."""
    src, root = tmp_path / "src", tmp_path / "root"
    src.mkdir()
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(pi_check.REPO / "scripts")!r})
        import pi_root
        from pathlib import Path
        try:
            with pi_root.signals_raise(), pi_root.Mounts(Path({str(root)!r})) as m:
                m.bind(Path({str(src)!r}), Path({str(root / "mnt")!r}))
                m.bind(Path({str(src)!r}), Path({str(root / "mnt2")!r}))
                print("mounted", flush=True)
                time.sleep(60)
        except (KeyboardInterrupt, pi_root.Interrupted) as exc:
            print("unwound", type(exc).__name__, flush=True)
            sys.exit(130)
    """)
    import signal

    # a background test run inherits SIGINT ignored (Python then raises no KeyboardInterrupt): reset it
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "mounted"
    assert len(pi_root.mounts_under(root)) == 2
    proc.send_signal(getattr(__import__("signal"), how))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "unwound" in out
    assert pi_root.mounts_under(tmp_path) == []


@needs_root
def test_a_tree_with_a_mount_inside_is_never_deleted(tmp_path):
    src, root = tmp_path / "src", tmp_path / "root"
    src.mkdir()
    (src / "precious").write_text("keep")
    with pi_root.Mounts(root) as m:
        m.bind(src, root / "dev")
        with pytest.raises(RuntimeError, match="refusing to delete"):
            pi_root.remove_tree(root)
    assert (src / "precious").read_text() == "keep"
    pi_root.remove_tree(root)
    assert not root.exists()


def test_manifest_flags_are_read_from_the_export(tmp_path, quick_example):
    """flagged_flex reads the exporter's select_tf_ops/flex_ops from a real manifest."""
    import shutil

    from edgekit.export.api import export_model
    from edgekit.runtime.manifest import MANIFEST_NAME

    art = tmp_path / "art"
    shutil.copytree(quick_example("moons_h3"), art / "moons_h3")
    export_model(art / "moons_h3", formats=["tflite"], precisions=["fp32"])
    assert pi_check.flagged_flex(art) == {}
    man = art / "moons_h3" / "exports" / MANIFEST_NAME
    doc = json.loads(man.read_text())
    doc["artifacts"][0].update(select_tf_ops=True, flex_ops=["Softsign"])
    man.write_text(json.dumps(doc))
    assert pi_check.flagged_flex(art) == {("moons_h3", "fp32"): ["Softsign"]}


def test_the_cache_must_live_outside_the_checkout(tmp_path):
    ex = tmp_path / "art"
    (ex / "exports").mkdir(parents=True)
    (ex / "exports" / "manifest.json").write_text("{}")
    r = subprocess.run([sys.executable, str(pi_check.REPO / "scripts" / "pi_check.py"), "--artifacts", str(ex),
                        "--cache", str(pi_check.REPO / "cache")], capture_output=True, text=True)
    assert r.returncode == 2 and "the cache must live outside the checkout" in r.stderr
    assert not (pi_check.REPO / "cache").exists()


def test_scripts_import_no_tensorflow_and_no_report_code_at_start():
    code = ("import sys; sys.path.insert(0, %r); import pi_root, pi_check; "
            "print(sorted(m for m in ('edgekit.report', 'tensorflow') if m in sys.modules))"
            % str(Path(pi_check.__file__).parent))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"

"""``edgekit bench`` end to end on one quick-trained, really exported example (no timing assertions).

One module-scoped run: a copy of the quick ``and_gate`` example exported to every format at
fp32 plus TFLite full-integer int8; the ONNX file replaced by garbage with a matching
checksum (a variant that fails to load); ``report.json`` from a real ``verify`` of the TFLite
files only (so those rows carry a parity status and the others say ``unknown``). Then
``edgekit bench DIR --threads 1 --repeat 3`` in a subprocess, and the bench.json it writes is
checked: schema, one row per manifest variant (TF.js per backend), raw-call rows, baselines,
the error row, RSS, parity, checks, the stdout table and the report.html section.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.runtime.jsdeps import modules_root

REPO = Path(__file__).resolve().parents[2]
HAVE_NODE = shutil.which("node") is not None and (modules_root() / "@tensorflow" / "tfjs").is_dir()
EXAMPLE = "and_gate"
ROW_KEYS = ("example", "kind", "runner", "format", "precision", "backend", "label", "threads", "threads_used",
            "status", "error", "runtime", "load_s", "latency", "throughput", "size_bytes", "path",
            "peak_rss_bytes", "rss", "parity", "notes")


def _edgekit(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def art(quick_example, tmp_path_factory) -> Path:
    from edgekit.export.api import export_model
    from edgekit.parity.verify import verify
    from edgekit.report.files import write_reports

    root = tmp_path_factory.mktemp("bench")
    dst = root / EXAMPLE
    shutil.copytree(quick_example(EXAMPLE), dst)
    shutil.rmtree(dst / "exports", ignore_errors=True)
    export_model(dst, precisions=["fp32", "int8"])
    # the ONNX fp32 file becomes garbage whose checksum the manifest agrees with: it fails to load
    man_path = dst / "exports" / "manifest.json"
    man = json.loads(man_path.read_text())
    onnx = next(a for a in man["artifacts"] if a["format"] == "onnx")
    bad = dst / "exports" / onnx["path"]
    bad.write_bytes(b"not an onnx model" * 10)
    onnx["sha256"] = hashlib.sha256(bad.read_bytes()).hexdigest()
    onnx["size_bytes"] = bad.stat().st_size
    man_path.write_text(json.dumps(man))
    res = verify([root], formats=["tflite"])  # after the manifest edit: an older report would be stale
    write_reports(res.rows, res.parity, root / "report.json", root / "report.md", res.seconds)
    return root


@pytest.fixture(scope="module")
def benched(art) -> tuple[subprocess.CompletedProcess, dict, list[dict]]:
    out = art / "out" / "bench.json"
    r = _edgekit("bench", str(art), "--threads", "1", "--repeat", "3", "--min-time", "0", "--max-time", "5",
                 "--budget", "0", "--out", str(out))
    assert out.is_file(), r.stderr[-3000:]
    doc = json.loads(out.read_text())
    man = json.loads((art / EXAMPLE / "exports" / "manifest.json").read_text())
    return r, doc, man["artifacts"]


def test_bench_json_is_well_formed(benched):
    r, doc, _ = benched
    assert r.returncode == 1, "a failing row must make the exit code 1"
    assert doc["schema"] == "edgekit.bench/1"
    assert doc["settings"]["threads"] == ["1"] and doc["settings"]["thread_counts"] == {"1": 1}
    assert doc["settings"]["throughput_batch"] == 1024
    for row in doc["rows"]:
        assert set(ROW_KEYS) <= set(row), sorted(set(ROW_KEYS) - set(row))
        assert row["example"] == EXAMPLE and row["threads"] == "1"
        assert row["status"] in ("ok", "error")
        if row["status"] == "ok":
            lat, thr = row["latency"], row["throughput"]
            assert 0 < lat["p50_ms"] <= lat["p99_ms"] and lat["calls"] >= 3, row
            assert thr["rows_per_s"] > 0 and 1 <= thr["batch"] <= 1024, row
            assert row["load_s"] >= 0 and row["size_bytes"] > 0 and row["runtime"], row
            assert row["peak_rss_bytes"] and row["peak_rss_bytes"] > 10 * 2**20, row
        else:
            assert row["error"], row


def test_every_manifest_variant_has_adapter_and_raw_rows(benched):
    _, doc, artifacts = benched
    rows = {(r["format"], r["precision"], r["backend"], r["kind"]): r for r in doc["rows"]}
    assert artifacts, "the export produced no artifacts"
    for a in artifacts:
        for backend in (("cpu", "wasm") if a["format"] == "tfjs" else (None,)):
            key = (a["format"], a["precision"], backend)
            assert key + ("adapter",) in rows, f"no adapter row for {key}"
            if a["format"] in ("tflite", "onnx", "tfjs"):
                assert key + ("raw",) in rows, f"no raw-call row for {key}"
            else:
                assert key + ("raw",) not in rows
    coreml = [r for r in doc["rows"] if r["format"] == "coreml"]
    assert coreml and all("reference evaluator" in " ".join(r["notes"]) for r in coreml)
    assert len(doc["rows"]) == 3 + sum(r["kind"] != "baseline" for r in doc["rows"])


def test_baselines_are_measured(benched):
    _, doc, _ = benched
    base = {r["runner"]: r for r in doc["rows"] if r["kind"] == "baseline"}
    assert set(base) == {"keras.predict", "keras.call", "savedmodel.signature"}
    for r in base.values():
        assert r["status"] == "ok", r["error"]
        assert r["parity"]["status"] == "reference"
    assert "model.predict" in base["keras.predict"]["runtime"]


def test_rows_that_run_are_ok_and_tfjs_covers_both_backends(benched):
    _, doc, _ = benched
    for r in doc["rows"]:
        if r["format"] in ("tflite", "coreml") or (r["format"] == "tfjs" and HAVE_NODE):
            assert r["status"] == "ok", f"{r['format']} {r['precision']} {r['kind']}: {r['error']}"
    tfjs = {(r["backend"], r["kind"]) for r in doc["rows"] if r["format"] == "tfjs"}
    assert tfjs == {("cpu", "adapter"), ("cpu", "raw"), ("wasm", "adapter"), ("wasm", "raw")}


def test_a_variant_that_fails_to_load_gets_error_rows_and_the_others_run(benched):
    r, doc, _ = benched
    onnx = [row for row in doc["rows"] if row["format"] == "onnx"]
    assert {row["kind"] for row in onnx} == {"adapter", "raw"}
    for row in onnx:
        assert row["status"] == "error" and row["latency"] is None
        assert row["error"], row
    assert sum(row["status"] == "ok" for row in doc["rows"]) >= len(doc["rows"]) - 2
    assert "-> error" in r.stdout


def test_parity_comes_from_the_verify_report(benched):
    _, doc, _ = benched
    for r in doc["rows"]:
        p = r["parity"]
        if r["format"] == "tflite":
            assert p["status"] in ("pass", "fail") and p["max_abs_err"] is not None, p
            assert p["metric"] == "accuracy" and p["metric_format"] is not None, p
        elif r["format"] in ("tfjs", "coreml"):
            assert p["status"] == "unknown", p


def test_checks_and_stdout_table(benched):
    r, doc, _ = benched
    kinds = {c["check"] for c in doc["checks"]}
    # and_gate's raw calls take µs: the adapter's fixed cost is reported, the 10% target is for >= 0.1 ms
    assert "speedup" in kinds and "overhead_us" in kinds and "overhead_bN" in kinds
    for c in doc["checks"]:
        if c["check"] == "overhead_us":
            assert c["met"] is None and c["value"] is not None, c
    speed = next(c for c in doc["checks"] if c["check"] == "speedup")
    from edgekit.bench.checks import SPEEDUP_MIN

    assert speed["value"] > 0 and speed["met"] is (speed["value"] >= SPEEDUP_MIN)
    for head in ("p50 ms", "p99 ms", "rows/s @1024", "peak RSS", "parity", "keras.predict", "tflite raw"):
        assert head in r.stdout
    assert "targets (reported, not enforced)" in r.stdout


def test_report_section(benched, art, tmp_path):
    from edgekit.report.bench_section import section_for

    shutil.copy(art / "out" / "bench.json", tmp_path / "bench.json")
    html = section_for(tmp_path)
    assert html.count("<svg") == 2 and f"id='bench-{EXAMPLE}'" in html and "iPhone" in html
    assert section_for(tmp_path / "nowhere") == ""


def test_adapter_overhead_is_paired_with_the_raw_call_in_one_process(benched):
    _, doc, _ = benched
    adapters = [r for r in doc["rows"] if r["kind"] == "adapter" and r["format"] == "tflite"]
    assert adapters
    for r in adapters:
        p = r["paired"]
        assert p["calls"] >= 30 and p["adapter_p50_ms"] > 0 and p["raw_p50_ms"] > 0, p
        assert p["overhead_us"] == pytest.approx((p["adapter_p50_ms"] - p["raw_p50_ms"]) * 1e3)
    fixed = [c for c in doc["checks"] if c["check"] == "overhead_us" and c["subject"].startswith("tflite")]
    assert fixed and all("paired in one process" in c["detail"] for c in fixed), fixed
    assert all(r["paired"] is None for r in doc["rows"] if r["kind"] in ("raw", "baseline"))


def test_flops_and_percent_of_peak(benched):
    _, doc, _ = benched
    pk = doc["machine"]["peak"]["1"]
    assert pk["fp32_gflops"] > 0 and pk["int8_gops"] > 0, pk
    tfl = [r for r in doc["rows"] if r["format"] == "tflite" and r["status"] == "ok"]
    assert tfl and len({r["flops"] for r in tfl}) == 1 and tfl[0]["flops"] > 0  # every precision: one graph
    for r in tfl:
        assert r["gflops"] > 0 and r["pct_peak"] > 0 and "tflite graph" in r["flops_source"], r
        assert r["peak_gops"] == (pk["int8_gops"] if r["precision"].startswith("int8") else pk["fp32_gflops"])
    keras = next(r for r in doc["rows"] if r["runner"] == "keras.call")
    assert keras["flops"] == tfl[0]["flops"] and "the example's fp32" in keras["flops_source"]


@pytest.mark.slow
def test_compare_exports_times_keras_own_exports_and_the_raw_converters(art, tmp_path):
    out = tmp_path / "bench.json"
    r = _edgekit("bench", str(art / EXAMPLE), "--threads", "1", "--formats", "tflite", "--no-rss",
                 "--no-baselines", "--repeat", "3", "--min-time", "0", "--compare-exports", "--budget", "0",
                 "--out", str(out), timeout=900)
    doc = json.loads(out.read_text())
    foreign = {x["runner"]: x for x in doc["rows"] if x["kind"] == "foreign"}
    assert set(foreign) == {"keras.export.litert", "tflite.converter"}, r.stderr[-2000:]  # --formats tflite
    for x in foreign.values():
        assert x["format"] == "tflite" and x["convert_s"] > 0, x
        assert x["status"] == "ok" and x["size_bytes"] > 0 and x["latency"]["p50_ms"] > 0, x
    checks = [c for c in doc["checks"] if c["check"] == "vs_foreign"]
    assert len(checks) == 2 and all(c["value"] > 0 for c in checks), checks
    assert all("paired in one process" in c["detail"] for c in checks), checks  # vs edgekit's own fp32 file
    assert "Keras' own exports" in r.stdout and "keras.export.litert" in r.stdout


def test_progress_is_a_line_per_case_on_stderr(benched):
    r, doc, _ = benched
    lines = [ln for ln in r.stderr.splitlines() if re.match(r"^\[\s*\d+/\d+ \d+:\d\d ETA ", ln)]
    assert len(lines) == len(doc["rows"]), r.stderr[-2000:]
    assert lines[-1].startswith(f"[{len(doc['rows'])}/{len(doc['rows'])} ")
    assert any("and_gate tflite int8 raw: p50 " in ln for ln in lines), lines
    assert "p50 ms" not in r.stderr and "p50 ms" in r.stdout  # the table goes to stdout


def test_a_tiny_budget_skips_cases_and_lists_them(art, tmp_path):
    out = tmp_path / "bench.json"
    r = _edgekit("bench", str(art / EXAMPLE), "--threads", "both", "--formats", "tflite", "--no-rss",
                 "--budget", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    man = json.loads((art / EXAMPLE / "exports" / "manifest.json").read_text())
    n_tflite = sum(a["format"] == "tflite" for a in man["artifacts"])
    # every case has its row (adapter + raw per TFLite file, 3 baselines; per thread setting): none dropped
    assert len(doc["rows"]) == 2 * (2 * n_tflite + 3)
    skipped = [x for x in doc["rows"] if x["status"] == "skipped"]
    assert skipped and all(x["status"] in ("ok", "skipped") for x in doc["rows"])
    assert all(x["skipped"].startswith("budget") and x["latency"] is None for x in skipped)
    assert doc["settings"]["total_budget_s"] == 1
    assert f"{len(skipped)} skipped for the budget" in r.stdout and "skipped: budget" in r.stdout
    assert sum(" skipped (budget" in ln for ln in r.stderr.splitlines()) == len(skipped)


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    r = _edgekit("bench", str(tmp_path / "missing"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _edgekit("bench", str(tmp_path), "--repeat", "0")
    assert r.returncode == 2 and "--repeat" in r.stderr and "Traceback" not in r.stderr
    r = _edgekit("bench", str(tmp_path), "--budget", "-1")
    assert r.returncode == 2 and "--budget" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bench.json").exists()


def test_cli_module_is_light():
    code = ("import sys, edgekit.cli.bench\n"
            "print(sorted(m for m in ('numpy', 'tensorflow', 'onnxruntime') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.stdout.strip() == "[]", r.stderr


def test_both_thread_settings_get_rows(art, tmp_path):
    out = tmp_path / "bench.json"
    r = _edgekit("bench", str(art / EXAMPLE), "--threads", "both", "--repeat", "2", "--min-time", "0",
                 "--formats", "tflite", "--no-baselines", "--no-rss", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["settings"]["threads"] == ["1", "all"]
    by_mode = {m: [x for x in doc["rows"] if x["threads"] == m] for m in ("1", "all")}
    assert len(by_mode["1"]) == len(by_mode["all"]) > 0
    assert all(x["format"] == "tflite" and x["status"] == "ok" for x in doc["rows"])
    assert {x["threads_used"] for x in by_mode["all"]} == {doc["settings"]["thread_counts"]["all"]}
    assert all(x["peak_rss_bytes"] is None for x in doc["rows"])


def test_a_report_older_than_the_manifest_gives_unknown_parity(tmp_path):
    from edgekit.bench.plan import ParityIndex

    ex = tmp_path / "ex"
    (ex / "exports").mkdir(parents=True)
    report = tmp_path / "report.json"
    report.write_text(json.dumps([{"example": "ex", "format": "tflite", "precision": "fp32", "status": "pass"}]))

    class Man:
        root = ex / "exports"

    idx = ParityIndex()
    idx.add_reports(Man, [tmp_path])
    mtime = report.stat().st_mtime
    assert idx.lookup("ex", "tflite", "fp32", None, mtime - 1)["status"] == "pass"
    stale = idx.lookup("ex", "tflite", "fp32", None, mtime + 1)
    assert stale["status"] == "unknown" and "older" in stale["note"]
    assert idx.lookup("ex", "onnx", "fp32", None, 0)["status"] == "unknown"

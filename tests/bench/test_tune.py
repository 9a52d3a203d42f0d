"""``edgekit bench --tune``: settings chosen by measurement are written to the manifest and applied by
``edgekit.load`` (explicit options still win; ``tuning=False`` ignores them). No timing is asserted.

The models are real graphs built without a converter (a one-op TFLite FULLY_CONNECTED flatbuffer and
a small ONNX Conv/Gemm graph), each in an exports dir with a real ``manifest.json`` (sha256 and all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.bench import peak
from edgekit.core.fsutil import sha256_tree

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from test_flops_peak import _onnx_model  # noqa: E402


def _exports(root: Path, fmt: str, name: str, write, inputs: list[dict]) -> Path:
    ex = root / f"{fmt}_ex"
    d = ex / "exports" / fmt
    d.mkdir(parents=True)
    write(d / name)
    art = {"format": fmt, "precision": "fp32", "path": f"{fmt}/{name}", "size_bytes": (d / name).stat().st_size,
           "sha256": sha256_tree(d / name), "inputs": inputs, "outputs": [], "converter": "hand-written"}
    man = {"schema": "edgekit.manifest/1", "edgekit_version": "test", "created": "2026-01-01T00:00:00+00:00",
           "source": {"path": "-", "example": f"{fmt}_ex", "inputs": inputs, "outputs": []},
           "metadata": {}, "artifacts": [art], "failures": []}
    (ex / "exports" / "manifest.json").write_text(json.dumps(man))
    return ex


@pytest.fixture()
def models(tmp_path) -> dict[str, Path]:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    tfl = _exports(tmp_path, "tflite", "fc.tflite",
                   lambda p: p.write_bytes(peak._fc_model(1, 96, 40, integer=False)),
                   [{"name": "x", "shape": [1, 96], "dtype": "float32"}])
    onx = _exports(tmp_path, "onnx", "tiny.onnx", _onnx_model,
                   [{"name": "x", "shape": [None, 3, 8, 8], "dtype": "float32"}])
    return {"tflite": tfl, "onnx": onx}


def _tune(ex: Path, tmp_path: Path) -> dict:
    from edgekit.bench import plan
    from edgekit.bench.tune import tune_cases

    work = tmp_path / f"work-{ex.name}"
    work.mkdir()
    cases = plan.build([ex], work, baselines=False)
    return tune_cases(cases, 2, None, lambda _m: None)


def test_tuning_is_recorded_with_every_candidate_and_the_mtime_kept(models, tmp_path):
    from edgekit.bench.tune import candidates

    for fmt, ex in models.items():
        man_path = ex / "exports" / "manifest.json"
        mtime = man_path.stat().st_mtime_ns
        got = _tune(ex, tmp_path)
        assert len(got) == 1 and "options" in next(iter(got.values())), got
        art = json.loads(man_path.read_text())["artifacts"][0]
        t = art["tuning"]
        assert len(t["p50_ms"]) == len(candidates(fmt, 2)) and t["chosen"] in t["p50_ms"], t
        assert t["options"] and t["by"] == "edgekit bench --tune"
        keys = {"num_threads"} if fmt == "tflite" else {"intra_op_num_threads", "graph_optimization_level"}
        assert set(t["options"]) == keys, t
        assert man_path.stat().st_mtime_ns == mtime  # a verify report of these files does not turn stale
        assert art["sha256"] == sha256_tree(ex / "exports" / art["path"])


def test_load_applies_the_recorded_tuning_and_explicit_options_win(models, tmp_path):
    import edgekit

    for fmt, ex in models.items():
        _tune(ex, tmp_path)
        art = json.loads((ex / "exports" / "manifest.json").read_text())["artifacts"][0]
        path = ex / "exports" / art["path"]
        with edgekit.load(path) as r:
            assert r.tuning == art["tuning"]["options"], (fmt, r.tuning)
            for k, v in art["tuning"]["options"].items():
                assert r.options[k] == v
        key = "num_threads" if fmt == "tflite" else "intra_op_num_threads"
        with edgekit.load(path, **{key: 3}) as r:
            assert r.options[key] == 3 and key not in r.tuning
        with edgekit.load(path, tuning=False) as r:
            assert r.tuning == {} and r.options[key] is None


def test_a_file_without_a_manifest_loads_untuned(models, tmp_path):
    import shutil

    import edgekit

    lone = tmp_path / "lone.onnx"
    shutil.copy(next((models["onnx"] / "exports" / "onnx").iterdir()), lone)
    with edgekit.load(lone) as r:
        assert r.tuning == {}


def test_cli_tune_writes_the_manifest_and_bench_json(models, tmp_path):
    out = tmp_path / "bench.json"
    ex = models["onnx"]
    r = subprocess.run([sys.executable, "-m", "edgekit", "bench", str(ex), "--tune", "--threads", "1", "--no-rss",
                        "--no-baselines", "--repeat", "3", "--min-time", "0", "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    art = json.loads((ex / "exports" / "manifest.json").read_text())["artifacts"][0]
    assert doc["settings"]["tune"] is True and art["tuning"]["options"]
    adapter = next(x for x in doc["rows"] if x["kind"] == "adapter")
    assert adapter["tuning"]["options"] == art["tuning"]["options"]
    assert "tune onnx_ex onnx fp32: " in r.stderr

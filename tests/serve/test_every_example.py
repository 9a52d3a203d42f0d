"""``edgekit serve`` over every example answers tritonclient and TF Serving REST with parity-passing outputs.

Slow (every example quick-trained and exported to TFLite, then served at once): the issue's
"done when". Also runs the load-test benchmark briefly: zero failed and zero lost requests.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _serve import ServeProcess, post_json

from edgekit.parity.metrics import task_metrics
from edgekit.parity.targets import calibrated_rows, load_target
from edgekit.parity.tolerance import tolerances_for
from edgekit.parity.verify import judge
from edgekit.runtime import manifest as mf

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("mlserver") is None,
                                 reason="edgekit serve needs the serve extra: pip install 'edgekit[serve]'")]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def all_artifacts(tmp_path_factory):
    from edgekit.export.api import export_model
    from edgekit.train.registry import select
    from edgekit.train.runner import train_examples

    root = tmp_path_factory.mktemp("serve-all")
    examples = select(["all"])
    train_examples(examples, root, seed=0, quick=True, log=lambda *a, **k: None)
    for ex in examples:
        report = export_model(root / ex.name, formats=["tflite"], precisions=["fp32", "int8"])
        assert all(r.ok for r in report.results), report.results
    return root


def test_every_example_answers_tritonclient_and_tf_serving(all_artifacts):
    """Served == the adapter run directly, bit for bit; the verdict on the served outputs is verify's verdict
    on the file (fp32 must pass; a quick-trained int8 file may fail verify itself, and then fails here too)."""
    import tritonclient.http as thttp

    from edgekit.parity.verify import verify
    from edgekit.runtime.registry import open_model

    names = sorted(p.name for p in all_artifacts.iterdir() if (p / "exports").is_dir())
    assert len(names) >= 14
    verified = {(r.example, r.precision): r.status for r in verify([all_artifacts], formats=["tflite"]).rows}
    with ServeProcess(str(all_artifacts), "--precisions", "fp32,int8") as srv:
        client = thttp.InferenceServerClient(srv.url.removeprefix("http://"))
        for example in names:
            manifest = all_artifacts / example / "exports" / "manifest.json"
            target = load_target(manifest)
            x = target.reference.inputs["features"]
            for precision, name in (("fp32", example), ("int8", f"{example}-int8")):
                art = next(a for a in mf.load(manifest).artifacts if a.format == "tflite" and a.precision == precision)
                inp = thttp.InferInput("features", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                triton = client.infer(name, [inp]).as_numpy("output_0")
                status, body = post_json(f"{srv.url}/v1/models/{name}:predict", {"instances": x.tolist()})
                assert status == 200, body
                tfs = np.asarray(body["predictions"], np.float32).reshape(triton.shape)
                with open_model(art.resolve(manifest.parent), "tflite") as runner:
                    direct = runner.predict(x)["output_0"]
                np.testing.assert_array_equal(triton, direct, err_msg=name)
                np.testing.assert_array_equal(tfs, direct, err_msg=name)
                tols = tolerances_for("tflite", precision, ["output_0"])
                mask = calibrated_rows(art, target) if tols[""].calibrated_range_only else None
                keras = task_metrics(target.task, target.reference.y_true, target.reference.outputs["output_0"],
                                     target.reference.n_labeled) if target.reference.n_labeled else None
                row = judge(target, "tflite", precision, "served", {"output_0": triton}, tols, {}, keras,
                            rows_mask=mask)  # verify's judgement: values and the task metric
                assert row["status"] == verified[(example, precision)], (name, row["message"])
                if precision == "fp32":
                    assert row["status"] == "pass", (name, row["message"])
        client.close()


def test_load_benchmark_loses_nothing(all_artifacts, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_serve.py"), str(all_artifacts),
                           "--clients", "3", "--seconds", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert [r["protocol"] for r in results] == ["v2-binary", "v2-json", "grpc", "tfs-rest"]
    for r in results:
        assert r["answered"] > 0 and r["failed"] == 0 and r["lost"] == 0, r

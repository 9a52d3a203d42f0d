"""The realistic zoo through every format: export, then verify every file in its runtime.

Each model must export every variant, every verify row must pass, and ``edgekit check`` must have
predicted exactly that (no format flagged). The heavy keras.applications models, and the models
whose constructs a lighter one already covers, are slow-marked (``make test-all`` runs them;
``scripts/zoo_table.py`` runs them all and prints the README's table)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow", reason="the zoo is built with Keras on TensorFlow (edgekit[export])")

import models  # noqa: E402  (tests/zoo/models.py, put on sys.path by conftest)

#: fast and essential: the rewrites (argmax, cumsum, einsum, erfc), the RNN re-trace, int32 ids
FAST = ("keras_ops", "transformer_block", "rnn_sensor")
CASES = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in models.ZOO]

#: what each model must show in its manifest (the fix that makes it pass)
EXPECTED = {
    "keras_ops": {("tfjs", "rewrites"): {"argmax-signbit->argmax", "cumsum-axis->positive", "einsum->matmul"},
                  ("onnx", "rewrites"): {"argmax-signbit->argmax"}},
    "transformer_block": {("coreml", "rewrites"): {"erfc->1-erf", "einsum->matmul"},
                          ("tflite", "rewrites"): {"reshape-batch->-1"}},  # Dense on rank 3: one XNNPACK partition
    "activations": {("tflite", "rewrites"): {"softsign->x/(1+|x|)"},
                    ("coreml", "rewrites"): {"erfc->1-erf", "expm1->exp-1"}},
}


@pytest.mark.parametrize("name", CASES)
def test_zoo_model_passes_everywhere(name, zoo_export):
    from edgekit.export.check import check
    from edgekit.parity.verify import verify

    d, export = zoo_export(name)
    failed = [f"{r['format']}/{r['precision']}: {r['error']}" for r in export["results"] if r["status"] != "ok"]
    assert not failed, failed
    manifest = json.loads((d / "saved_model_exports" / "manifest.json").read_text())
    for art in manifest["artifacts"]:
        assert art.get("ran_in"), f"{art['format']}/{art['precision']} never ran: {art.get('not_run')}"
        if name in ("rnn_sensor", "lstm_text", "bigru_text"):
            assert art["graph"].startswith("keras re-trace"), art["graph"]
        if art["format"] == "tflite":
            assert art["ops"] == "builtins", art.get("flex_ops")
        want = EXPECTED.get(name, {}).get((art["format"], "rewrites"))
        if want is not None:
            assert set(art["rewrites"]) == want, (art["format"], art["rewrites"])
    report = verify([d / "saved_model_exports"], jobs=2)
    bad = [f"{r.format}/{r.precision}/{r.backend or '-'}: {r.status} {r.message}" for r in report.rows
           if not r.passed]
    assert not bad, bad
    assert len(report.rows) == 14  # 11 variants, TF.js on cpu and wasm
    prediction = check(d / "saved_model")
    assert prediction, prediction.predicted_failures()

"""Determinism: the same seed gives the same model; the same SavedModel gives the same exports.

Training (TF op determinism on, everything seeded): ``regression_mlp`` trained again with seed
0 in this process equals the shared quick-trained copy (trained by ``quick_example``, possibly
in another process) — metrics, golden outputs, calibration data.

Export, the same SavedModel twice (this process, every format and precision; fp32 also
against the shared export made in another process). Every variant's outputs on the golden
inputs are identical. Bytes:

=========  ==============================  ===============================================
format     precisions                      byte-identical?
=========  ==============================  ===============================================
tflite     fp32, fp16, int8_dynamic, int8  yes
onnx       fp32, int8_dynamic              yes (since export/onnx.py replaces tf2onnx's
                                           graph doc_string, which named the traced function
                                           with a per-process counter: ``__call___196``)
tfjs       fp32, fp16, uint8               yes (since export/tfjs.py sorts model.json's keys:
                                           protobuf map fields - node attrs - came out of
                                           ``MessageToDict`` in a different order each run)
coreml     fp32, fp16                      no: ``Manifest.json`` of the .mlpackage names its
                                           items by random UUIDs (coremltools' ModelPackage
                                           uses uuid4); ``model.mlmodel`` and ``weight.bin``
                                           are byte-identical
=========  ==============================  ===============================================

``exports/manifest.json`` itself differs (``created`` timestamp, ``seconds`` timings).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgekit.runtime import manifest as mf

NOT_BYTE_IDENTICAL = {("coreml", "fp32"), ("coreml", "fp16")}
UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def _npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_same_seed_same_model(quick_example, tmp_path):
    from edgekit.train.registry import select
    from edgekit.train.runner import train_examples

    first = quick_example("regression_mlp")
    train_examples(select(["regression_mlp"]), tmp_path, seed=0, quick=True, log=lambda *a, **k: None)
    second = tmp_path / "regression_mlp"
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (first, second))
    assert m1["seed"] == m2["seed"] == 0
    assert m1["metrics"] == m2["metrics"] and m1["headline"] == m2["headline"]
    for name in ("reference.npz", "calibration.npz"):
        a, b = _npz(first / name), _npz(second / name)
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}:{k}")


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _outputs(path, fmt, x):
    from edgekit.runtime.registry import open_model

    with open_model(path, format=fmt) as r:
        return r.predict({r.inputs[0].name: x})


@pytest.fixture(scope="module")
def two_exports(quick_example, tmp_path_factory):
    from edgekit.export.api import export_model

    src = quick_example("regression_mlp")
    root = tmp_path_factory.mktemp("determinism")
    for name in ("a", "b"):
        report = export_model(src, out=root / name)
        assert report.ok, report.results
    return src, root / "a", root / "b"


def _pairs(a, b):
    ma, mb = mf.load(a), mf.load(b)
    arts_b = {(x.format, x.precision): x for x in mb.artifacts}
    assert sorted(arts_b) == sorted((x.format, x.precision) for x in ma.artifacts)
    return [(x, arts_b[(x.format, x.precision)]) for x in ma.artifacts]


def test_export_twice_identical_outputs_and_bytes(two_exports):
    src, a, b = two_exports
    x = _npz(src / "reference.npz")["features"]
    pairs = _pairs(a, b)
    assert len(pairs) == 11
    table = {}
    for art_a, art_b in pairs:
        key = (art_a.format, art_a.precision)
        out_a = _outputs(art_a.verify(a), art_a.format, x)
        out_b = _outputs(art_b.verify(b), art_b.format, x)
        for k in out_a:
            np.testing.assert_array_equal(out_a[k], out_b[k], err_msg=str(key))
        table[key] = art_a.sha256 == art_b.sha256
    assert {k for k, same in table.items() if not same} == NOT_BYTE_IDENTICAL, table


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_coreml_packages_differ_only_by_item_uuids(two_exports, precision):
    _, a, b = two_exports
    rel = f"coreml/model_{precision}.mlpackage"
    ta, tb = _tree(a / rel), _tree(b / rel)
    assert sorted(ta) == sorted(tb)
    differing = [k for k in ta if ta[k] != tb[k]]
    assert differing == ["Manifest.json"], differing
    ja, jb = json.loads(ta["Manifest.json"]), json.loads(tb["Manifest.json"])

    def by_name(m):  # the same items, keyed by name instead of their random identifiers
        entries = m.pop("itemInfoEntries")
        assert all(UUID.fullmatch(k) for k in entries)
        root = entries[m.pop("rootModelIdentifier")]["name"]
        return m, root, {e["name"]: e for e in entries.values()}

    assert by_name(dict(ja)) == by_name(dict(jb))
    assert ja["rootModelIdentifier"] != jb["rootModelIdentifier"]


def test_export_in_another_process_gives_the_same_fp32_bytes(two_exports, robust_example):
    """The shared robustness export (other process, other copy of the same SavedModel)."""
    _, a, _ = two_exports
    other = {(x.format, x.precision): x.sha256 for x in mf.load(robust_example / "exports").artifacts}
    here = {(x.format, x.precision): x.sha256 for x in mf.load(a).artifacts}
    for key, digest in other.items():
        assert (here[key] == digest) == (key not in NOT_BYTE_IDENTICAL), key

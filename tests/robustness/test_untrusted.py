"""Untrusted files never run code: no unpickling of data files, Keras models only in safe mode.

Where edgekit loads ``.keras`` files: ``edgekit.train.moons.sweep_figure`` (the moons models just
trained into the output dir) and ``edgekit.train.grid`` (its own checkpoint) pass
``safe_mode=True``; a user's ``.keras`` is loaded by ``edgekit export``/``verify``
(``edgekit.parity.keras_model``) and ``edgekit bench``, in safe mode unless ``--unsafe`` is given.
The source scan below keeps it that way: a new ``load_model`` call without
``safe_mode=True`` literally (or a listed ``--unsafe`` switch), or any pickle use, fails this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("edgekit", "runtime", "parity", "export", "train", "bench", "web", "benchmarks")
PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _sources():
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]
    assert len(files) > 20
    return [(p, ast.parse(p.read_text(), str(p))) for p in files]


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def test_no_pickle_anywhere_in_the_source():
    bad = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bad += [f"{path}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLERS]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLERS:
                bad.append(f"{path}: from {node.module} import ...")
            elif isinstance(node, ast.Call):
                fn = _dotted(node.func)
                allow = _kw(node, "allow_pickle")
                if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                    bad.append(f"{path}:{node.lineno}: {fn}(allow_pickle={ast.unparse(allow)})")
                if fn.endswith(("np.load", "numpy.load")) and allow is None:
                    bad.append(f"{path}:{node.lineno}: {fn} without an explicit allow_pickle=False")
                if fn in ("eval", "exec", "torch.load", "yaml.load", "yaml.unsafe_load"):
                    bad.append(f"{path}:{node.lineno}: {fn}(...)")
        text = path.read_text()
        for needle in ("allow_pickle=True", "pickle.load"):
            if needle in text:
                bad.append(f"{path}: contains {needle!r}")
    assert bad == []


#: the one place a user's .keras file is loaded (``edgekit bench DIR``: the Keras baselines);
#: safe_mode there follows ``--unsafe`` (default off), tested below.
UNSAFE_SWITCH = {"bench/cases.py": "safe_mode=not case.get('unsafe', False)",
                 # export/verify of a user's .keras (issue 11): --unsafe, default off; refusal tested in
                 # tests/byom/test_bad_input.py (the Lambda's marker file is never written)
                 "parity/keras_model.py": "safe_mode=not unsafe"}


def test_every_keras_load_is_in_safe_mode_unless_the_user_says_unsafe():
    sites = []
    for path, tree in _sources():
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _dotted(node.func).endswith("load_model"):
                safe = _kw(node, "safe_mode")
                literal = isinstance(safe, ast.Constant) and safe.value is True
                switched = safe is not None and UNSAFE_SWITCH.get(rel) == f"safe_mode={ast.unparse(safe)}"
                assert literal or switched, f"{rel}:{node.lineno}: {ast.unparse(node)} must pass safe_mode=True"
                sites.append(rel)
    # A new place that loads a user's .keras file needs an explicit --unsafe switch (default off),
    # an entry in UNSAFE_SWITCH and a test that a Lambda model is refused without the switch.
    # train/tf_export.py reloads the model.keras it just trained (issue 16: SavedModel on TF), safe_mode=True;
    # bench/baselines.py loads the export's model.keras for --compare-exports, always safe_mode=True (issue 17);
    # train/moons.py no longer reloads its models (the sweep figure is drawn in numpy)
    assert sorted(set(sites)) == ["bench/baselines.py", "bench/cases.py", "export/graph.py", "parity/keras_model.py",
                                  "train/grid.py", "train/tf_export.py"], sites


def _lambda_model(path: Path, marker: Path, n_features: int) -> None:
    """A .keras file whose Lambda layer creates ``marker`` when it runs."""
    import keras

    m = str(marker)
    inp = keras.Input((n_features,), name="features")
    out = keras.layers.Lambda(lambda x: (open(m, "a").close(), x)[1])(inp)  # noqa: SIM115
    out = keras.layers.Dense(1)(out)
    keras.Model(inp, out).save(path)
    marker.unlink(missing_ok=True)  # building traced the lambda once


def test_a_lambda_model_is_refused_where_edgekit_loads_keras_files(tmp_path):
    """The moons sweep figure loads ``<out>/<name>/model.keras``: a hostile file put there is
    refused before its code can run (the Lambda would write a marker file)."""
    from edgekit.train.moons import sweep_figure

    marker = tmp_path / "pwned"
    (tmp_path / "moons_h1").mkdir()
    _lambda_model(tmp_path / "moons_h1" / "model.keras", marker, 2)
    with pytest.raises(ValueError, match="(?i)lambda|safe_mode"):
        sweep_figure(tmp_path, ["moons_h1"])
    assert not marker.exists(), "the Lambda's code ran"
    assert not (tmp_path / "moons_sweep.png").exists()


def test_reference_with_pickled_payload_is_not_unpickled(tmp_path):
    """The loaders edgekit uses on user .npz files refuse object arrays instead of unpickling."""
    from edgekit.core.errors import InputError
    from edgekit.parity.targets import _load_npz

    class Boom:
        def __reduce__(self):
            return (Path(tmp_path / "pwned").touch, ())

    np.savez(tmp_path / "ref.npz", features=np.array([Boom()], dtype=object))
    with pytest.raises(InputError, match="allow_pickle"):
        _load_npz(tmp_path / "ref.npz")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("unsafe", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["default", "--unsafe"])
def test_bench_refuses_a_lambda_model_keras_unless_unsafe(unsafe, fresh, tmp_path):
    """``edgekit bench DIR`` loads DIR's model.keras for its Keras baselines: a Lambda model's
    rows are errors (its code never runs) unless ``--unsafe`` is given explicitly."""
    import json

    from _robust import run_cli

    ex = fresh()
    marker = tmp_path / "pwned"
    _lambda_model(ex / "model.keras", marker, 10)
    argv = ["bench", ex, "--formats", "tflite", "--threads", "1", "--repeat", "1", "--min-time", "0",
            "--max-time", "0.05", "--no-rss", "--out", tmp_path / "bench.json"] + (["--unsafe"] if unsafe else [])
    proc = run_cli(argv)
    assert "Traceback" not in proc.stdout
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    keras_rows = [r for r in rows if r["format"] == "keras"]
    assert keras_rows and all(r["status"] == ("ok" if unsafe else "error") for r in keras_rows), keras_rows
    assert marker.exists() == unsafe
    if not unsafe:
        assert proc.returncode == 1
        assert all("safe_mode" in json.dumps(r) or "Lambda" in json.dumps(r) for r in keras_rows)
        assert all(r["status"] == "ok" for r in rows if r["format"] != "keras")

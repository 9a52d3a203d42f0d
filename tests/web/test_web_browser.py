"""The web demo in headless Chromium: parity per backend, the moons click, a broken model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, needs_chromium

from edgekit.parity.tolerance import lookup
from edgekit.web.browser import check_browser

pytestmark = [pytest.mark.browser, needs_chromium]


def _reference(web_artifacts: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(web_artifacts / name / "reference.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def checked(web_artifacts, tmp_path_factory):
    shots = tmp_path_factory.mktemp("screenshots")
    return check_browser([web_artifacts], precisions=["fp32", "fp16"], screenshots=shots)


def test_every_backend_that_starts_matches_keras(checked):
    started = [b for b, s in checked.backends.items() if s == "started"]
    assert {"wasm", "cpu"} <= set(started), checked.backends
    assert {r["example"] for r in checked.rows} == set(EXAMPLES)
    assert len(checked.rows) == len(EXAMPLES) * 2 * len(started)
    for r in checked.rows:
        assert r["status"] == "pass", r
        assert r["format"] == "tfjs-browser" and r["runtime"] == f"chromium {checked.chromium} {r['backend']}"
        tol = lookup("tfjs", r["precision"])
        assert r["atol_policy"] == tol.atol and r["atol"] >= tol.atol
        assert r["required_atol"] <= r["atol"]
        assert r["console_errors"] == []
        assert r["metric_format"] == pytest.approx(r["metric_keras"], abs=0.02)


def test_a_screenshot_per_example(checked):
    assert sorted(p.stem for p in checked.screenshots) == sorted(EXAMPLES)
    for p in checked.screenshots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5_000


@pytest.mark.parametrize("name", EXAMPLES)
def test_page_shows_the_example_and_a_passing_parity_panel(server, open_page, web_artifacts, name):
    page, errors = open_page(f"{server.url}/?example={name}&backend=cpu")
    state = page.evaluate("window.edgekit")
    assert errors == [] and state["status"] == "ready" and state["backend"] == "cpu", state["error"]
    assert page.locator("#parity-verdict").inner_text() == "PASS"
    ref = _reference(web_artifacts, name)
    got = np.asarray(state["parity"]["outputs"], np.float32).reshape(ref["output_0"].shape)
    tol = lookup("tfjs", "fp32")
    scale = max(1.0, float(np.abs(ref["output_0"]).max())) if tol.atol_scale == "peak" else 1.0
    np.testing.assert_allclose(got, ref["output_0"], atol=tol.atol * scale, rtol=tol.rtol)
    assert state["parity"]["pass"] is True and state["parity"]["atol"] == pytest.approx(tol.atol * scale)
    kind = state["demo"]["kind"]
    assert kind == {"and_gate": "gates", "moons_h3": "plane", "regression_linear": "form"}[name]
    if kind == "gates":
        rows = state["demo"]["rows"]
        assert [r["x"] for r in rows] == [[0, 0], [0, 1], [1, 0], [1, 1]]
        assert all(r["keras"] is not None for r in rows)      # the golden inputs hold the truth table
        np.testing.assert_allclose([r["probability"] for r in rows], [r["keras"] for r in rows], atol=1e-5)
        assert page.locator("#truth-table tbody tr").count() == 4
    if kind == "form":
        assert page.locator("#features input").count() == 10
        page.locator("#features input").first.fill("100")
        page.wait_for_function("() => window.edgekit.demo.features[0] === 100")
        pred = page.evaluate("window.edgekit.demo.prediction[0]")
        assert pred != pytest.approx(float(ref["output_0"][0, 0]), abs=1e-3)  # it re-ran the model


def test_clicking_the_moons_plane_classifies_the_point(server, open_page, web_artifacts):
    page, errors = open_page(f"{server.url}/?example=moons_h3&backend=wasm")
    assert errors == [] and page.evaluate("window.edgekit.status") == "ready"
    ref = _reference(web_artifacts, "moons_h3")
    i = int(np.argmax(ref["output_0"].max(axis=1)))          # the point Keras is surest about
    x, y = (float(v) for v in ref["features"][i])
    plane = page.evaluate("window.edgekit.plane")
    box = page.locator("#plane").bounding_box()
    px = box["x"] + (x - plane["xmin"]) / (plane["xmax"] - plane["xmin"]) * box["width"]
    py = box["y"] + box["height"] - (y - plane["ymin"]) / (plane["ymax"] - plane["ymin"]) * box["height"]
    page.mouse.click(px, py)
    page.wait_for_function("() => window.edgekit.lastClick !== null")
    click = page.evaluate("window.edgekit.lastClick")
    assert abs(click["x"] - x) < 0.05 and abs(click["y"] - y) < 0.05
    assert click["class"] == int(np.argmax(ref["output_0"][i]))
    assert click["probability"] == pytest.approx(float(ref["output_0"][i].max()), abs=0.05)
    assert f"class {click['label']}" in page.locator("#click-result").inner_text()


def test_a_missing_shard_shows_a_clear_error(web_artifacts, tmp_path, open_page):
    from edgekit.web.server import BackgroundServer

    art = tmp_path / "artifacts"
    shutil.copytree(web_artifacts / "and_gate", art / "and_gate")
    for shard in (art / "and_gate" / "exports" / "tfjs" / "fp32").glob("*.bin"):
        shard.unlink()
    with BackgroundServer(art) as srv:
        page, _ = open_page(f"{srv.url}/?example=and_gate&backend=cpu")
        state = page.evaluate("window.edgekit")
        assert state["status"] == "error"
        box = page.locator("#error")
        assert box.is_visible()
        text = box.inner_text()
        assert "Could not load the TF.js model of and_gate" in text and "missing weight shard" in text
        assert "404" in text                                  # names what failed: the shard request


def test_an_unknown_example_lists_the_available_ones(server, open_page):
    page, _ = open_page(f"{server.url}/?example=nope&backend=cpu")
    text = page.locator("#error").inner_text()
    assert page.evaluate("window.edgekit.status") == "error"
    assert "nope" in text and all(n in text for n in EXAMPLES)

"""report.html's first screen: the status matrix and the latency-vs-size scatters (issue 17)."""

import json
import re
import xml.etree.ElementTree as ET

import pytest
from _onnx_example import make_example, weights

from edgekit.cli import run
from edgekit.report import html as report_html
from edgekit.report.overview import STATUS_COLORS, latency_points, matrix_html

CLI = ("edgekit.cli.verify", "edgekit.cli.report")
NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def verified(tmp_path, capsys):
    """alpha: onnx fp32 pass, onnx int8_dynamic fail, tfjs uint8 error (no file); beta: onnx fp32 pass."""
    w, b = weights()
    make_example(tmp_path, "alpha", variants={"fp32": (w, b), "int8_dynamic": (w * 3, b)},
                 failures=[{"format": "tfjs", "precision": "uint8", "error": "no converter"}])
    make_example(tmp_path, "beta", task="regression")
    assert run(["verify", str(tmp_path)], modules=CLI) == 1
    capsys.readouterr()
    return tmp_path


def _page(root, capsys) -> str:
    assert run(["report", str(root)], modules=CLI) == 0
    capsys.readouterr()
    return (root / "report.html").read_text()


def _matrix_cells(page: str) -> list[ET.Element]:
    table = re.search(r"<table class='matrix'>.*?</table>", page, flags=re.S).group(0)
    return [td for td in ET.fromstring(table).iter("td") if "cell" in (td.get("class") or "").split()]


def test_matrix_comes_first_with_one_coloured_cell_per_row(verified, capsys):
    page = _page(verified, capsys)
    rows = json.loads((verified / "report.json").read_text())
    assert page.index("class='matrix'") < page.index('id="table"') < page.index('id="row-0"')
    cells = _matrix_cells(page)
    assert len(cells) == len(rows) == 4
    by_status = sorted(c.get("class").split()[1] for c in cells)
    assert by_status == sorted(r["status"] for r in rows) == ["error", "fail", "pass", "pass"]
    for status, colour in STATUS_COLORS.items():  # the colour rule of each status is in the page's CSS
        assert f".overview td.{status}{{background:{colour}}}" in page
    fail = next(c for c in cells if "fail" in c.get("class"))
    r = next(r for r in rows if r["status"] == "fail")
    title = fail.get("title")
    assert f"{r['max_abs_err']:.2e}" in title or f"{r['max_abs_err']:.4g}" in title
    assert "atol" in title and "accuracy Keras" in title and "int8_dynamic" in title
    i = rows.index(r)
    assert fail.find("a").get("href") == f"#row-{i}" and f'id="row-{i}"' in page
    # alpha has three variants, beta only fp32: beta's other two columns are empty
    assert page.count("class='none'") == 2


def test_matrix_keeps_a_cell_for_a_second_runtime_of_the_same_variant():
    base = {"format": "tflite", "precision": "fp32", "backend": None, "status": "pass", "max_abs_err": 0.0,
            "atol": 1e-5}
    rows = [base | {"example": "e", "runtime": "litert"}, base | {"example": "e", "runtime": "tensorflow"},
            base | {"example": "f", "runtime": "litert", "status": "unverified"}]
    cells = _matrix_cells(matrix_html(rows))
    assert len(cells) == 3 and [c.get("class") for c in cells] == ["cell pass", "cell pass", "cell unverified"]


def _scatters(page: str) -> dict[str, ET.Element]:
    out = {}
    for s in re.findall(r'<svg[^>]*class="latsize".*?</svg>', page, flags=re.S):
        svg = ET.fromstring(s)
        out[svg.find(f"{NS}text").text] = svg
    return out


def test_scatter_has_one_point_per_variant_with_data_from_verify(verified, capsys):
    page = _page(verified, capsys)
    sc = _scatters(page)
    assert set(sc) == {"alpha", "beta"}
    assert len(sc["alpha"].findall(f"{NS}circle")) == 2  # the error row has no file: no point
    assert len(sc["beta"].findall(f"{NS}circle")) == 1
    assert page.index('class="latsize"') < page.index('id="table"')
    labels = " ".join(t.text or "" for t in sc["alpha"].iter(f"{NS}text"))
    assert "verify time" in labels and "bench" not in labels
    tips = [c.find(f"{NS}title").text for c in sc["alpha"].findall(f"{NS}circle")]
    assert any("int8_dynamic" in t and "fail" in t for t in tips)


def test_scatter_takes_bench_latency_when_bench_json_has_the_example(verified, capsys):
    rows = json.loads((verified / "report.json").read_text())
    bench_rows = [{"example": "alpha", "kind": "adapter", "format": "onnx", "precision": "fp32", "backend": None,
                   "threads": t, "status": "ok", "latency": {"p50_ms": ms}} for t, ms in (("1", 0.25), ("all", 9.0))]
    bench_rows.append({"example": "alpha", "kind": "raw", "format": "onnx", "precision": "int8_dynamic",
                       "backend": None, "threads": "1", "status": "ok", "latency": {"p50_ms": 0.1}})
    pts = latency_points(rows, bench_rows)
    assert pts["alpha"]["source"] == "bench" and pts["beta"]["source"] == "verify"
    # alpha: only fp32 has an adapter row (1 thread wins); int8_dynamic (raw only) and the error row drop out
    assert [(p["label"], p["ms"]) for p in pts["alpha"]["points"]] == [("onnx fp32", 0.25)]
    assert pts["alpha"]["missing"] == 2
    (verified / "bench.json").write_text(json.dumps({"rows": bench_rows}))
    sc = _scatters(_page(verified, capsys))
    labels = " ".join(t.text or "" for t in sc["alpha"].iter(f"{NS}text"))
    assert "bench" in labels and len(sc["alpha"].findall(f"{NS}circle")) == 1


def _extra(root, rows):
    return f"<section id='extra-test'>{len(rows)} rows</section>"


def test_extra_section_hook_renders_after_the_examples(verified, capsys, monkeypatch):
    monkeypatch.setattr(report_html, "EXTRA_SECTIONS", ("test_overview:_extra",))
    page = _page(verified, capsys)
    assert "<section id='extra-test'>4 rows</section>" in page
    assert page.index('id="beta"') < page.index("extra-test")

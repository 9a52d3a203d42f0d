"""report.json schema, report.md and the self-contained report.html."""

import base64
import json
import os
import re
import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
from _onnx_example import make_example, weights

from edgekit.cli import run
from edgekit.core.errors import InputError
from edgekit.report.files import REQUIRED_KEYS, check_rows
from edgekit.report.html import scatter_svg
from edgekit.report.tables import format_markdown, format_table

CLI = ("edgekit.cli.verify", "edgekit.cli.report")


def _png(path):
    """A valid 2x2 grey PNG written by hand (no imaging library needed)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + bytes([128, 128]) for _ in range(2))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def verified(tmp_path, capsys):
    w, b = weights()
    make_example(tmp_path, "alpha", variants={"fp32": (w, b), "int8_dynamic": (w * 3, b)},
                 failures=[{"format": "tfjs", "precision": "uint8", "error": "no converter"}])
    make_example(tmp_path, "beta", task="regression")
    _png(tmp_path / "alpha" / "loss.png")
    code = run(["verify", str(tmp_path)], modules=CLI)
    capsys.readouterr()
    assert code == 1
    return tmp_path


def test_report_json_schema(verified):
    rows = json.loads((verified / "report.json").read_text())
    assert isinstance(rows, list) and len(rows) == 4
    for r in rows:
        assert set(REQUIRED_KEYS) <= set(r)
        assert r["status"] in ("pass", "fail", "error")
        for k in ("max_abs_err", "atol", "metric_keras", "metric_format"):
            assert r[k] is None or isinstance(r[k], float)
        assert r["size_bytes"] is None or isinstance(r["size_bytes"], int)
        assert isinstance(r["example"], str) and isinstance(r["runtime"], str)
    by = {(r["example"], r["precision"]): r for r in rows}
    assert by[("alpha", "fp32")]["status"] == "pass" and by[("alpha", "fp32")]["metric"] == "accuracy"
    assert by[("alpha", "int8_dynamic")]["status"] == "fail"
    assert by[("alpha", "uint8")]["status"] == "error" and by[("alpha", "uint8")]["format"] == "tfjs"
    assert by[("beta", "fp32")]["metric"] == "r2" and by[("beta", "fp32")]["status"] == "pass"
    assert check_rows(rows) is rows


BAD_STATUS = [dict.fromkeys(REQUIRED_KEYS, None) | {"status": "ok"}]


@pytest.mark.parametrize("bad,match", [({"rows": []}, "must hold a list"),
                                       ([{"example": "x"}], "lacks keys"),
                                       (BAD_STATUS, "unknown status")])
def test_check_rows_refuses_bad_reports(bad, match):
    with pytest.raises(InputError, match=match):
        check_rows(bad)


def test_table_and_markdown(verified):
    rows = json.loads((verified / "report.json").read_text())
    text = format_table(rows)
    head = text.splitlines()[0].split()
    assert head[:5] == ["example", "format", "precision", "runtime", "status"]
    assert "-> conversion failed: no converter" in text
    md = format_markdown(rows, 1.5)
    assert "4 rows: 2 pass, 1 fail, 1 error in 1.5 s" in md
    assert md.count("\n| alpha |") == 3 and "## Failures" in md
    from edgekit.parity.tolerance import lookup

    t = lookup("onnx", "int8_dynamic")
    assert "## Tolerance policy" in md
    assert f"| onnx | int8_dynamic | {t.atol:g} | {t.rtol:g} | {t.max_metric_drop:g} | all |" in md


def test_report_html_is_self_contained(verified, capsys):
    code = run(["report", str(verified)], modules=CLI)
    out = capsys.readouterr().out
    assert code == 0 and "running verify first" not in out  # report.json is fresh: reused
    page = (verified / "report.html").read_text()
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)
    assert page.count("data:image/png;base64,") == 1  # alpha's plot; beta has none
    b64 = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1)
    assert base64.b64decode(b64) == (verified / "alpha" / "loss.png").read_bytes()
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    parity_svgs = [s for s in svgs if 'class="latsize"' not in s]  # + 2 latency-vs-size (overview)
    assert len(parity_svgs) == 3 and len(svgs) == 5  # one parity scatter per row that ran (not the error row)
    for s in svgs:
        ET.fromstring(s)  # well-formed XML
    assert "onnx int8_dynamic output_0" in page and "no converter" in page


def test_report_runs_verify_when_missing_or_stale(tmp_path, capsys):
    make_example(tmp_path, "alpha")
    out_file = tmp_path / "site" / "r.html"
    assert run(["report", str(tmp_path), "--out", str(out_file)], modules=CLI) == 0
    assert "running verify first" in capsys.readouterr().out
    assert out_file.is_file() and (tmp_path / "report.json").is_file()
    man = tmp_path / "alpha" / "exports" / "manifest.json"
    later = (tmp_path / "report.json").stat().st_mtime + 10
    os.utime(man, (later, later))
    assert run(["report", str(tmp_path)], modules=CLI) == 0
    assert "running verify first" in capsys.readouterr().out


def test_report_bad_dir_is_one_line(tmp_path, capsys):
    assert run(["report", str(tmp_path / "none")], modules=CLI, prog="edgekit") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "directory not found" in err


def test_scatter_svg_maps_points_inside_the_frame():
    x = np.array([0.0, 0.5, 1.0])
    svg = scatter_svg(x, x + np.array([0, 0.1, 0]), "t <&>")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    circles = root.findall(f".//{ns}circle")
    assert len(circles) == 3
    for c in circles:
        assert 34 <= float(c.get("cx")) <= 240 - 34 and 34 <= float(c.get("cy")) <= 240 - 34
    # y = x points lie on the diagonal: cx + cy is constant for them
    s = [float(c.get("cx")) + float(c.get("cy")) for c in circles]
    assert s[0] == pytest.approx(s[2]) and s[1] < s[0]  # the raised point sits above the diagonal
    assert "t &lt;&amp;&gt;" in svg
    ET.fromstring(scatter_svg(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), "const"))


def test_report_json_is_strict_json_even_with_infinite_errors(tmp_path):
    from edgekit.report.files import write_reports

    row = dict.fromkeys(REQUIRED_KEYS, None) | {"example": "e", "format": "onnx", "precision": "fp32",
                                                "runtime": "r", "status": "fail", "max_rel_err": float("inf"),
                                                "outputs": [{"max_abs_err": float("nan")}]}
    write_reports([row], {}, tmp_path / "report.json", tmp_path / "report.md")

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    rows = json.loads((tmp_path / "report.json").read_text(), parse_constant=refuse)
    assert rows[0]["max_rel_err"] is None and rows[0]["outputs"][0]["max_abs_err"] is None

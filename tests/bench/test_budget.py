"""The worker's budget rules, run in-process on cases it must skip (no model is loaded) and the
per-case loop limits; the end-to-end budget test is in test_bench.py. No timing is asserted."""

from __future__ import annotations

import json
import time

from edgekit.bench import worker
from edgekit.bench.progress import Progress, clock
from edgekit.bench.timing import Budget, throughput_rows


def _case(key: str, **extra) -> dict:
    return {"key": key, "example": "ex", "kind": "adapter", "runner": "adapter", "format": "tflite",
            "precision": "fp32", "backend": None, "path": "/nonexistent.tflite", **extra}


def _run(tmp_path, cases, deadline, after=0) -> list[dict]:
    cf, out = tmp_path / "cases.json", tmp_path / "out.jsonl"
    cf.write_text(json.dumps(cases))
    worker.main([str(cf), str(out), "--threads", "1", "--deadline", repr(deadline), "--after", str(after)])
    return list(worker.read_records(str(out)))


def test_cases_past_the_deadline_are_skipped_with_the_reason(tmp_path):
    recs = _run(tmp_path, [_case("a"), _case("b")], time.time() - 1)
    assert [r["key"] for r in recs] == ["a", "b"]
    assert all(r["skipped"].startswith("budget: 0.0 s left") for r in recs), recs


def test_a_case_whose_previous_run_does_not_fit_is_skipped_and_says_so(tmp_path):
    recs = _run(tmp_path, [_case("slow", est_s=1e6)], time.time() + 60)
    assert len(recs) == 1 and "took 1000000.0 s with the other thread setting" in recs[0]["skipped"]


def test_the_cases_other_workers_run_later_keep_their_share(tmp_path):
    # 60 s left but 1000 cases still to come after this one: its share is below MIN_SHARE_S
    recs = _run(tmp_path, [_case("a")], time.time() + 60, after=1000)
    assert "skipped" in recs[0] and "for 1001 cases" in recs[0]["skipped"]


def test_a_case_that_fits_runs_and_its_error_is_its_row(tmp_path):
    recs = _run(tmp_path, [_case("a", inputs_file=str(tmp_path / "missing.npz"))], time.time() + 600)
    assert [r for r in recs if "start" in r] and "error" in recs[-1] and recs[-1]["seconds"] >= 0


def test_loops_shrink_to_the_share():
    b = Budget()
    assert worker.budget_for_share(b, float("inf")) == b
    small = worker.budget_for_share(b, 2.0)
    assert small.max_time <= 0.6 and small.min_time <= 0.5 and small.min_samples == 3
    assert throughput_rows(0.006, 1024) == 32 and throughput_rows(1e-6, 1024) == 1024
    assert throughput_rows(2.0, 1024) == 1


def test_progress_lines_count_up_with_an_eta():
    lines: list[str] = []
    p = Progress(3, lines.append, deadline=time.time() + 100)
    p.done(_case("a"), 1, {"key": "a", "result": {"latency": {"p50_ms": 0.25}}, "seconds": 1.5})
    p.done(_case("b"), 1, {"key": "b", "skipped": "budget: 0.1 s left for 2 cases"})
    p.done(_case("c"), 2, {"key": "c", "error": "boom"})
    assert lines[0].startswith("[1/3 0:00 ETA ") and "t=1 ex tflite fp32 adapter: p50 0.2500 ms, 1.5 s" in lines[0]
    assert "skipped (budget" in lines[1] and lines[2].startswith("[3/3 ") and "error: boom" in lines[2]
    assert clock(75) == "1:15" and clock(3700) == "1:01:40"

"""``edgekit bench --tune``: pick each TFLite/ONNX file's runtime settings by measurement, record them.

Candidates per file (``cpus`` = the cores this process may use):

- TFLite (LiteRT with its default XNNPACK delegate): ``num_threads`` in {1, cpus};
- ONNX Runtime: ``intra_op_num_threads`` in {1, cpus} x ``graph_optimization_level`` in
  {basic, extended, all} (``inter_op_num_threads`` 1).

Every candidate is loaded through the edgekit adapter (``tuning=False``) and timed at batch 1 in
interleaved rounds (so a burst of load from elsewhere hits all of them alike); the fastest median
wins, except that more threads must beat the same setting on 1 thread by ``MORE_THREADS_GAIN``
(10%) to be chosen: on a shared or thermally limited device one thread is the safer default.
The choice goes into the artifact's ``tuning`` entry of ``manifest.json`` (see
:mod:`edgekit.runtime.tuning`), which ``edgekit.load`` applies. The manifest's modification time is
kept, so a verify report does not turn stale: no exported file changes.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgekit.bench.timing import sample, warm_up

LEVELS = ("basic", "extended", "all")
MORE_THREADS_GAIN = 0.10
SECONDS_EACH = 0.3
ROUNDS = 3


def candidates(fmt: str, cpus: int) -> list[dict]:
    """The option sets tried for one file of format ``fmt``."""
    threads = sorted({1, max(1, cpus)})
    if fmt == "tflite":
        return [{"num_threads": t} for t in threads]
    if fmt == "onnx":
        return [{"intra_op_num_threads": t, "inter_op_num_threads": 1, "graph_optimization_level": lvl}
                for t in threads for lvl in LEVELS]
    return []


def _name(opts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in opts.items() if k != "inter_op_num_threads")


def _threads(opts: dict) -> int:
    return int(opts.get("num_threads") or opts.get("intra_op_num_threads") or 1)


def choose(p50: dict[str, float], cands: list[dict]) -> dict:
    """The chosen option set: the fastest, unless a fewer-thread twin is within ``MORE_THREADS_GAIN``."""
    by_name = {_name(c): c for c in cands if _name(c) in p50}
    best = min(by_name, key=lambda n: p50[n])
    opts = by_name[best]
    if _threads(opts) > 1:
        twin = {**opts, **({"num_threads": 1} if "num_threads" in opts else {"intra_op_num_threads": 1})}
        tn = _name(twin)
        if tn in p50 and p50[tn] <= p50[best] * (1 + MORE_THREADS_GAIN):
            opts = twin
    return opts


def tune_file(path: str, fmt: str, feeds: dict, cpus: int, seconds_each: float = SECONDS_EACH) -> dict:
    """Measure every candidate on ``path`` and return its ``tuning`` entry (see module docstring)."""
    from edgekit.runtime.registry import open_model

    cands = candidates(fmt, cpus)
    runners = [open_model(path, format=fmt, tuning=False, **c) for c in cands]
    samples: dict[str, list[float]] = {_name(c): [] for c in cands}
    try:
        per = seconds_each / ROUNDS
        for _ in range(ROUNDS):
            for c, r in zip(cands, runners, strict=True):
                def fn(r=r):
                    return r.predict(feeds)

                warm_up(fn, 3, 0.0, cap=per)
                samples[_name(c)] += sample(fn, 5, per, per * 2, min_samples=3)
    finally:
        for r in runners:
            r.close()
    p50 = {n: statistics.median(s) * 1e3 for n, s in samples.items()}
    chosen = choose(p50, cands)
    return {"options": {k: v for k, v in chosen.items() if k != "inter_op_num_threads"}, "p50_ms": p50,
            "chosen": _name(chosen), "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpus": cpus, "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "by": "edgekit bench --tune", "rule": f"fastest median at batch 1; more threads only if "
                                                  f">= {MORE_THREADS_GAIN:.0%} faster than 1 thread"}


def record(manifest: Path, entries: dict[str, dict]) -> None:
    """Write ``entries`` (artifact path as in the manifest -> tuning) into ``manifest``, keeping its mtime.
    Holds the export directory's run lock (as export and verify do), so a concurrent export's
    manifest is never overwritten with a stale copy."""
    from edgekit.core.lock import run_lock
    from edgekit.runtime import manifest as mf

    with run_lock(manifest.parent, command="edgekit bench --tune", required=False):
        st = manifest.stat()
        man = mf.load(manifest)
        data = dict(man.data)
        data["artifacts"] = [{**a, "tuning": entries[a["path"]]} if a["path"] in entries else a
                             for a in data["artifacts"]]
        mf.save(manifest, data)
        os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns))


def tune_cases(cases: list[dict], cpus: int, deadline: float | None, log: Callable[[str], None]) -> dict:
    """Tune every TFLite/ONNX file among ``cases`` (adapter cases with a ``manifest`` and an
    ``artifact_path``), record the results per manifest; returns ``{file path: tuning or {"error"}}``."""
    from edgekit.bench.inputs import load_inputs

    todo = {c["path"]: c for c in cases if c["kind"] == "adapter" and c["format"] in ("tflite", "onnx")
            and not c.get("error") and c.get("manifest")}
    out: dict[str, dict] = {}
    per_manifest: dict[str, dict[str, dict]] = {}
    for i, (path, c) in enumerate(todo.items()):
        if deadline is not None and (deadline - time.time()) / (len(todo) - i) < 2 * SECONDS_EACH:
            out[path] = {"skipped": "budget"}
            log(f"tune {c['example']} {c['format']} {c['precision']}: skipped (budget)")
            continue
        x1, _ = load_inputs(c["inputs_file"])
        try:
            t = tune_file(path, c["format"], x1, cpus)
        except Exception as exc:  # noqa: BLE001 - a file that cannot be tuned keeps its defaults
            out[path] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            log(f"tune {c['example']} {c['format']} {c['precision']}: error {out[path]['error']}")
            continue
        out[path] = t
        per_manifest.setdefault(c["manifest"], {})[c["artifact_path"]] = t
        log(f"tune {c['example']} {c['format']} {c['precision']}: {t['chosen']} "
            f"({t['p50_ms'][t['chosen']]:.4f} ms; " + ", ".join(f"{k} {v:.4f}" for k, v in t["p50_ms"].items()
                                                                  if k != t["chosen"]) + ")")
    for m, entries in per_manifest.items():
        record(Path(m), entries)
    return out

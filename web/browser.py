"""The browser check: run every TF.js export in headless Chromium and compare with Keras.

Any export with a TF.js model is checked: one that is not an edgekit example (a ``.keras``, a
live model, a SavedModel) runs in a bare page on every golden input and output
(:mod:`edgekit.web.harness`). For each example with a TF.js export, :func:`check_browser` serves the artifacts with
:mod:`edgekit.web.server` (a free port on 127.0.0.1, in a thread), opens the demo page
once per (precision, backend) in Debian's Chromium driven by Playwright, waits for the
page to run the golden inputs, reads the in-page outputs from ``window.edgekit`` and
compares them with the Keras outputs in ``reference.npz`` under the tolerance policy
(``tfjs``/precision in :mod:`edgekit.parity.tolerance`). The comparison is done here in Python,
not trusted from the page. One screenshot is saved per example.

Rows have verify's shape (:func:`edgekit.parity.verify._row`) with ``format="tfjs-browser"``
and ``runtime="chromium <version> <backend>"``, plus ``backend``, ``screenshot``,
``load_ms`` and ``console_errors``. A backend that does not start in this browser (no
WebGL, say) gives no rows; :attr:`BrowserResult.backends` says which started and why not.

Chromium runs with the flags in ``shared/STACK.md`` and a fresh profile directory::

    from edgekit.web.browser import check_browser
    result = check_browser(["artifacts"], screenshots="artifacts/screenshots")
    for row in result.rows: print(row["example"], row["runtime"], row["status"], row["max_abs_err"])
"""

from __future__ import annotations

import re
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from edgekit.core.errors import DependencyError, EdgekitError, InputError, UsageError, require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run")
BACKENDS = ("webgl", "wasm", "cpu")
FORMAT = "tfjs-browser"
DONE_JS = "() => window.edgekit && (window.edgekit.status === 'ready' || window.edgekit.status === 'error')"
STATE_JS = """() => { const e = window.edgekit, n = document.getElementById('notice');
  return {status: e.status, error: e.error, backend: e.backend, backendStarted: e.backendStarted,
          precision: e.precision, timings: e.timings, parity: e.parity,
          notice: n.hidden ? null : n.textContent}; }"""


@dataclass
class BrowserResult:
    """What :func:`check_browser` found.

    Attributes:
        rows: verify-shaped rows, one per (example, precision, started backend).
        arrays: the browser outputs of each row (``{output name: array}``), aligned with rows.
        backends: backend -> ``"started"`` or why it did not start.
        chromium: the browser's version string.
        screenshots: one PNG per example.
        seconds: wall time.
    """

    rows: list[dict]
    arrays: list[dict[str, np.ndarray]]
    backends: dict[str, str]
    chromium: str
    screenshots: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r["status"] == "pass" for r in self.rows)


def chromium_available(executable: str = CHROMIUM) -> bool:
    """True if the Chromium binary and Playwright for Python are both present."""
    import importlib.util

    return Path(executable).is_file() and importlib.util.find_spec("playwright") is not None


def merge_into(verify_result, browser: BrowserResult) -> None:
    """Append the browser rows (ids continued) and their outputs to a :class:`~edgekit.parity.results.VerifyReport`.

    The report then draws their parity scatters like any other row
    (``parity["row<id>__<output>"]``).
    """
    for row, arrays in zip(browser.rows, browser.arrays, strict=True):
        verify_result.append(row, arrays)
    verify_result.seconds += browser.seconds


def _launch(pw, executable: str, profile: Path):
    try:
        return pw.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS),
            viewport={"width": 1200, "height": 860})
    except Exception as exc:  # noqa: BLE001 - Playwright raises its own Error type
        raise DependencyError("Chromium did not start", got=f"{executable}: {str(exc).splitlines()[0]}",
                              expected="Debian's chromium package (make setup)") from exc


def _targets(dirs: list[Path]) -> list:
    from edgekit.parity.verify import find_manifests, load_target

    targets, seen = [], set()
    for d in dirs:
        for m in find_manifests(Path(d)):
            if m.resolve() in seen:
                continue
            seen.add(m.resolve())
            t = load_target(m)  # checks reference and every file's sha256 up front (exit 2)
            if any(a.format == "tfjs" for a, _ in t.artifacts):
                targets.append(t)
    return targets


def _page_url(base: str, example: str, backend: str, precision: str) -> str:
    return f"{base}/?{urlencode({'example': example, 'backend': backend, 'precision': precision})}"


def _open(context, url: str, timeout_s: float, page_error) -> tuple[object, dict, list[str], float]:
    """Load ``url`` in a new page; return (page, window.edgekit state, console errors, seconds).

    A page that does not finish in time (or crashes) gives an ``error`` state, not an exception.
    """
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    t0 = time.perf_counter()
    try:
        page.goto(url, wait_until="load", timeout=timeout_s * 1000)
        page.wait_for_function(DONE_JS, timeout=timeout_s * 1000)
        state = page.evaluate(STATE_JS)
    except page_error as exc:
        state = {"status": "error", "backend": None,
                 "error": f"page did not finish within {timeout_s:g} s: {str(exc).splitlines()[0]}"}
    return page, state, errors, time.perf_counter() - t0


def _chromium_version(context, executable: str) -> str:
    browser = getattr(context, "browser", None)
    if browser is not None:
        return browser.version
    import subprocess

    out = subprocess.run([executable, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"(\d+\.\d+\.\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


def _evaluate(target, art, backend: str, chromium: str, state: dict, errors: list[str],
              seconds: float, overrides) -> tuple[dict, dict[str, np.ndarray]]:
    """Turn one page's state into a verify row (comparison done here, not in the page)."""
    from edgekit.parity.compare import compare_outputs
    from edgekit.parity.metrics import TASK_METRIC, task_metrics
    from edgekit.parity.tolerance import tolerances_for
    from edgekit.parity.verify import _row, judge_metric

    ref = target.reference
    runtime = f"chromium {chromium} {backend}"
    base = {"size_bytes": int(art.size_bytes), "path": art.path, "backend": backend,
            "seconds": round(seconds, 3), "console_errors": errors,
            "load_ms": (state.get("timings") or {}).get("load_ms")}
    if state["status"] != "ready":
        return _row(target, FORMAT, art.precision, runtime, "error",
                    message=f"page error: {state.get('error')}", **base), {}
    par = state.get("parity")
    if not par:
        return _row(target, FORMAT, art.precision, runtime, "error",
                    message="the page ran no parity check (no reference?)", **base), {}
    first = next(iter(ref.outputs))
    want = ref.outputs[first]
    got = np.asarray(par["outputs"], dtype=np.float64)
    if got.size != want.size:
        return _row(target, FORMAT, art.precision, runtime, "fail", message=(
            f"browser returned {got.size} values for {first!r}, Keras has {want.size}"), **base), {}
    got = got.astype(np.float32).reshape(want.shape)
    tols = tolerances_for("tfjs", art.precision, list(ref.outputs), overrides)
    # The page runs the first output only (the artifact contract has one output).
    result = compare_outputs({first: got}, {first: want}, tols)
    tol = tols[""]
    row = _row(target, FORMAT, art.precision, runtime, "pass", **base, max_abs_err=result.max_abs_err,
               atol=tol.atol, rtol=tol.rtol, atol_policy=tol.atol, required_atol=result.required_atol,
               max_metric_drop=tol.max_metric_drop, outputs=[o.to_dict() for o in result.outputs],
               page_max_abs_err=par.get("max_abs_err"), page_pass=par.get("pass"))
    worst = result.outputs[0] if result.outputs else None
    if worst is not None:
        # atol as applied (scaled by the output's peak for atol_scale="peak"), as verify reports it
        row.update(mean_abs_err=worst.mean_abs_err, max_rel_err=worst.max_rel_err, atol=worst.atol)
    messages = list(result.failures)
    if target.task in TASK_METRIC and ref.n_labeled:
        km = task_metrics(target.task, ref.y_true, want, ref.n_labeled)
        fm = task_metrics(target.task, ref.y_true, got, ref.n_labeled)
        if km.value is not None and fm.value is not None:
            judge_metric(row, messages, km, fm, tol)
    if errors:
        messages.append(f"{len(errors)} console error(s): {errors[0][:200]}")
    if messages:
        row["status"] = "fail"
        row["message"] = "; ".join(messages)
    return row, {first: got}


def _cases(t, backends, precisions, status):
    """(TF.js artifact, backend) pairs of one target still worth running: the chosen precisions on
    the backends that started (``status`` is read at each step, so a backend that fails drops out)."""
    for art, _ in t.artifacts:
        if art.format != "tfjs" or (precisions and art.precision not in precisions):
            continue
        for backend in backends:
            if status.get(backend, "started") == "started":
                yield art, backend


def _run_foreign(t, context, backends, precisions, chromium, timeout_s, overrides, min_rows, status, rows,
                 arrays) -> None:
    """The rows of one non-example export (every TF.js precision x started backend); no screenshot."""
    from edgekit.web.harness import run_export

    for art, backend in _cases(t, backends, precisions, status):
        row, got, state = run_export(context, t, art, backend, chromium, timeout_s, overrides, min_rows)
        status[backend] = state
        if row is not None:
            row["screenshot"] = None
            rows.append(row)
            arrays.append(got)


def check_browser(dirs: list[Path], backends: tuple[str, ...] = BACKENDS,
                  precisions: list[str] | None = None, screenshots: Path | None = None,
                  executable: str = CHROMIUM, timeout_s: float = 60.0, overrides=None,
                  min_rows: int = 8) -> BrowserResult:
    """Load the demo page for every TF.js export on each backend that starts; compare with Keras.

    Args:
        dirs: artifacts roots or example dirs (as for ``edgekit verify``).
        backends: TF.js backends to try (default webgl, wasm, cpu).
        precisions: only these TF.js precisions (default None: every exported one).
        screenshots: directory for one PNG per example (default None: a temporary
            directory that is removed; pass a path to keep them).
        executable: the Chromium binary (default ``/usr/bin/chromium``).
        timeout_s: per-page time limit in seconds (default 60).
        overrides: tolerance overrides, see :func:`edgekit.parity.tolerance.lookup` (default none).
        min_rows: a row of a non-example export that compared fewer golden rows is
            ``insufficient`` (default 8).

    Raises:
        UsageError: an unknown backend.
        DependencyError: Chromium or Playwright missing, or Chromium does not start.
        InputError / IntegrityError: bad artifacts (before the browser starts).
    """
    from edgekit.web.server import BackgroundServer

    t_start = time.perf_counter()
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise UsageError("unknown TF.js backend", got=bad or list(backends), expected=list(BACKENDS))
    if not Path(executable).is_file():
        raise DependencyError("Chromium not found", got=executable,
                              expected="Debian's chromium (apt-get install chromium, or make setup)")
    sync_api = require("playwright.sync_api", "web", "playwright")
    targets = _targets([Path(d) for d in dirs])
    if not targets:
        raise InputError("no export with a TF.js model found", got=[str(d) for d in dirs],
                         expected="exports with tfjs/ (edgekit export --formats tfjs)")
    # edgekit's examples run in the demo page; any other export (a .keras, a live model, a
    # SavedModel) in a bare page that runs every golden input and output (edgekit.web.harness)
    examples = [t for t in targets if t.example_dir is not None]
    foreign = [t for t in targets if t.example_dir is None]
    rows: list[dict] = []
    arrays: list[dict[str, np.ndarray]] = []
    status: dict[str, str] = {}
    shots: list[Path] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgekit-chromium-")))
        shot_dir = Path(screenshots) if screenshots is not None else tmp / "screenshots"
        shot_dir.mkdir(parents=True, exist_ok=True)
        servers = {}
        for t in examples:
            root = t.example_dir.parent.resolve()
            if root not in servers:
                servers[root] = stack.enter_context(BackgroundServer(root))
        pw = stack.enter_context(sync_api.sync_playwright())
        context = _launch(pw, executable, tmp / "profile")
        stack.callback(context.close)
        chromium = _chromium_version(context, executable)
        for t in foreign:
            _run_foreign(t, context, backends, precisions, chromium, timeout_s, overrides, min_rows,
                         status, rows, arrays)
        for t in examples:
            base = servers[t.example_dir.parent.resolve()].url
            shot = None
            for art, backend in _cases(t, backends, precisions, status):
                url = _page_url(base, t.example, backend, art.precision)
                page, state, errors, secs = _open(context, url, timeout_s, sync_api.Error)
                try:
                    if state["status"] == "ready" and state["backend"] != backend:
                        status[backend] = (state.get("notice") or
                                           f"did not start; the page fell back to {state['backend']}")
                        continue
                    if state["status"] == "ready":
                        status[backend] = "started"
                    try:
                        row, got = _evaluate(t, art, backend, chromium, state, errors, secs, overrides)
                    except EdgekitError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others
                        from edgekit.parity.verify import _row

                        row, got = _row(t, FORMAT, art.precision, f"chromium {chromium} {backend}",
                                        "error", message=f"{type(exc).__name__}: {exc}",
                                        backend=backend, seconds=round(secs, 3)), {}
                    if shot is None:
                        shot = shot_dir / f"{t.example}.png"
                        page.screenshot(path=str(shot), full_page=True)
                        shots.append(shot)
                    row["screenshot"] = str(shot)
                    rows.append(row)
                    arrays.append(got)
                finally:
                    page.close()
        if screenshots is None:
            # keep nothing from the temporary dir: the paths would dangle
            for row in rows:
                row["screenshot"] = None
            shots = []
    for b in backends:
        status.setdefault(b, "not tried")
    return BrowserResult(rows, arrays, status, chromium, shots, time.perf_counter() - t_start)

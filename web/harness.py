"""The browser check for any export: a bare page that runs a TF.js graph model on the golden inputs.

edgekit's demo page (``web/static``) knows the examples' layout (``example.json``, one
output, a truth table or a form). A ``.keras``, live-model or SavedModel export has none of
that: :func:`run_export` opens a blank page at a private origin (``http://edgekit.invalid``)
whose every request Playwright answers from disk — TF.js from the npm cache, the model from
the export's ``tfjs/<precision>/`` (paths confined to it) — so nothing listens on a port and
nothing outside those two directories can be read. The page loads the model with
``tf.loadGraphModel``, runs every golden input (integers as int32, TF.js' only integer dtype)
with ``executeAsync`` on the requested backend and hands every output back; the comparison is
verify's own (:func:`edgekit.parity.verify.judge`), done here in Python.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekit.core.paths import PathEscape, confine

ORIGIN = "http://edgekit.invalid"
VENDOR = {"tfjs": Path("@tensorflow/tfjs/dist"), "tfjs-backend-wasm": Path("@tensorflow/tfjs-backend-wasm/dist")}
PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>edgekit TF.js check</title>
<script src="/vendor/tfjs/tf.min.js"></script>
<script src="/vendor/tfjs-backend-wasm/tf-backend-wasm.min.js"></script></head>
<body><pre id="status">loading</pre></body></html>"""
TYPES = {".js": "text/javascript", ".json": "application/json", ".wasm": "application/wasm",
         ".bin": "application/octet-stream", ".html": "text/html"}

RUN_JS = """async ({backend, modelUrl, feeds, names}) => {
  tf.wasm.setWasmPaths('/vendor/tfjs-backend-wasm/');
  let ok = false;
  try { ok = await tf.setBackend(backend); await tf.ready(); } catch (e) { ok = false; }
  if (!ok || tf.getBackend() !== backend) return {started: false, backend: tf.getBackend()};
  const fetchFunc = async (url, init) => {
    const r = await fetch(url, init);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return r;
  };
  const t0 = performance.now();
  const model = await tf.loadGraphModel(modelUrl, {fetchFunc});
  const loadMs = performance.now() - t0;
  const inputs = {};
  for (const [name, a] of Object.entries(feeds)) inputs[name] = tf.tensor(a.data, a.shape, a.dtype);
  let out = await model.executeAsync(inputs, names);
  if (!Array.isArray(out)) out = [out];
  const result = {};
  for (let i = 0; i < names.length; i++) {
    result[names[i]] = {dtype: out[i].dtype, shape: out[i].shape, data: Array.from(await out[i].data())};
    out[i].dispose();
  }
  Object.values(inputs).forEach((t) => t.dispose());
  model.dispose();
  return {started: true, backend: tf.getBackend(), loadMs, outputs: result, tfjs: tf.version.tfjs};
}"""


def _router(node_modules: Path, export_root: Path):
    """A Playwright route handler serving the page, the vendored TF.js and the export's files."""

    def handle(route) -> None:
        path = route.request.url[len(ORIGIN):].split("?", 1)[0].lstrip("/")
        head, _, rest = path.partition("/")
        try:
            if path in ("", "index.html"):
                return route.fulfill(status=200, body=PAGE, content_type="text/html")
            if head == "vendor":
                pkg, _, leaf = rest.partition("/")
                file = confine(node_modules / VENDOR[pkg], leaf) if pkg in VENDOR else None
            elif head == "model":
                file = confine(export_root, rest)
            else:
                file = None
        except PathEscape:
            return route.fulfill(status=403, body=b"forbidden")
        if file is None or not file.is_file():
            return route.fulfill(status=404, body=b"not found")
        return route.fulfill(status=200, body=file.read_bytes(),
                             content_type=TYPES.get(file.suffix, "application/octet-stream"))

    return handle


def _wire(arr: np.ndarray) -> dict:
    if arr.dtype == np.bool_:
        dtype = "bool"
    elif arr.dtype.kind in "iu":
        dtype = "int32"
    else:
        dtype = "float32"
    return {"dtype": dtype, "shape": list(arr.shape), "data": arr.astype(np.float64 if dtype == "float32"
                                                                           else np.int64).ravel().tolist()}


def run_export(context, target, art, backend: str, chromium: str, timeout_s: float, overrides,
               min_rows: int) -> tuple[dict | None, dict[str, np.ndarray], str]:
    """Run one TF.js artifact of a non-example export on ``backend`` in a new page.

    Returns:
        ``(row or None if the backend did not start, outputs, backend status)``.
    """
    from edgekit.parity.tolerance import tolerances_for
    from edgekit.parity.verify import _row, judge, tfjs_int_notes
    from edgekit.runtime.jsdeps import modules_root

    fmt = "tfjs-browser"
    runtime = f"chromium {chromium} {backend}"
    ref = target.reference
    base = {"size_bytes": int(art.size_bytes), "path": art.path, "backend": backend}
    root = target.manifest.root.resolve()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.route(f"{ORIGIN}/**", _router(modules_root(), root))
    t0 = time.perf_counter()
    try:
        page.set_default_timeout(timeout_s * 1000)
        page.goto(f"{ORIGIN}/", wait_until="load")
        notes = tfjs_int_notes(ref.inputs, ref.outputs)
        state = page.evaluate(RUN_JS, {"backend": backend, "modelUrl": f"{ORIGIN}/model/{art.path}/model.json",
                                       "feeds": {n: _wire(a) for n, a in ref.inputs.items()},
                                       "names": list(ref.outputs)})
    except Exception as exc:  # noqa: BLE001 - Playwright raises its own Error type; one row, not a crash
        row = _row(target, fmt, art.precision, runtime, "error", message=f"page error: {str(exc).splitlines()[0]}",
                   seconds=round(time.perf_counter() - t0, 3), console_errors=errors, **base)
        return row, {}, "started"
    finally:
        page.close()
    if not state.get("started"):
        return None, {}, f"did not start in this browser (running on {state.get('backend')})"
    got = {}
    for name, o in state["outputs"].items():
        dtype = np.dtype("bool" if o["dtype"] == "bool" else o["dtype"])
        got[name] = np.asarray(o["data"], dtype=np.float64 if dtype.kind == "f" else np.int64) \
            .astype(dtype).reshape(o["shape"])
    tols = tolerances_for("tfjs", art.precision, list(ref.outputs), overrides)
    row = judge(target, fmt, art.precision, runtime, got, tols,
                {**base, "console_errors": errors, "load_ms": state.get("loadMs")}, None, min_rows, notes)
    if errors and row["status"] == "pass":
        row["status"] = "fail"
        row["message"] = f"{len(errors)} console error(s): {errors[0][:200]}; {row['message']}".rstrip("; ")
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row, got, "started"

// edgekit web demo: loads an example's TF.js graph model over HTTP, shows it working, and
// checks its outputs on the golden inputs against Keras (reference.npz, served as JSON).
// No build step: plain browser JavaScript; `tf` comes from /vendor/tfjs/tf.min.js.
//
// State for test harnesses lives on window.edgekit:
//   {status: "loading"|"ready"|"error", ready, error, example, precision, backend,
//    requestedBackend, backendStarted, tfjsVersion, modelUrl, timings: {load_ms, parity_ms},
//    parity: {max_abs_err, atol, rtol, min_atol_to_pass, pass, shape, outputs},
//    plane: {xmin, xmax, ymin, ymax, width, height}, lastClick: {x, y, class, label, probability}}
"use strict";

const BACKENDS = ["webgl", "wasm", "cpu"];
const E = (window.edgekit = {
  status: "loading", ready: false, error: null, example: null, precision: null, backend: null,
  requestedBackend: null, backendStarted: null, tfjsVersion: null, modelUrl: null,
  timings: {}, parity: null, plane: null, lastClick: null, demo: null,
});

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (v, d = 4) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(d));

function setStatus(text) { $("status").textContent = text; }

function fail(message) {
  const msg = message instanceof Error ? message.message : String(message);
  E.error = msg; E.status = "error"; E.ready = false;
  const box = $("error");
  box.textContent = msg;
  box.hidden = false;
  setStatus("Stopped: see the error above.");
}

window.addEventListener("error", (ev) => { if (E.status !== "error") fail(`Page error: ${ev.message}`); });
window.addEventListener("unhandledrejection", (ev) => { if (E.status !== "error") fail(`Page error: ${ev.reason}`); });

async function getJSON(url, what) {
  let resp;
  try { resp = await fetch(url, { cache: "no-store" }); } catch (err) {
    throw new Error(`Could not fetch ${what} (${url}): ${err.message}. Is edgekit serve-web still running?`);
  }
  if (!resp.ok) {
    const text = (await resp.text()).replace(/<[^>]+>/g, " ").replace(/\s+/g, " ").trim();
    throw new Error(`Could not fetch ${what} (${url}): HTTP ${resp.status}. ${text}`);
  }
  return resp.json();
}

async function postJSON(url, body, what) {
  let resp;
  try {
    resp = await fetch(url, { method: "POST", cache: "no-store", headers: { "Content-Type": "application/json" },
                              body: JSON.stringify(body) });
  } catch (err) {
    throw new Error(`Could not reach ${what} (${url}): ${err.message}. Is edgekit serve-web still running?`);
  }
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(`${what} failed (${url}): HTTP ${resp.status}. ${data.error || ""}`);
  return data;
}

// ---- model helpers ---------------------------------------------------------------------------
let model = null;
let nFeatures = 0;

/** Runs the model on rows (array of arrays); returns an array of output rows. */
async function predict(rows) {
  const x = tf.tensor2d(rows.flat(), [rows.length, nFeatures], "float32");
  let out;
  try {
    out = model.predict(x);
    if (Array.isArray(out)) { out.slice(1).forEach((t) => t.dispose()); out = out[0]; }
    else if (!(out instanceof tf.Tensor)) { const ts = Object.values(out); ts.slice(1).forEach((t) => t.dispose()); out = ts[0]; }
    const k = out.shape[out.shape.length - 1];
    const flat = await out.data();
    const res = [];
    for (let i = 0; i < rows.length; i++) res.push(Array.from(flat.subarray(i * k, (i + 1) * k)));
    return res;
  } finally { x.dispose(); if (out) out.dispose(); }
}

/** Class probabilities from one output row (sigmoid → [1-p, p]; softmax as is). */
const probs = (row) => (row.length === 1 ? [1 - row[0], row[0]] : row);
const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);
const labelOf = (info, c) => (info.labels && info.labels[c] !== undefined ? info.labels[c] : c);
const rowsOf = (arr) => {
  const [n, k] = arr.shape.length === 1 ? [arr.shape[0], 1] : arr.shape;
  return Array.from({ length: n }, (_, i) => arr.data.slice(i * k, (i + 1) * k));
};

// ---- backend --------------------------------------------------------------------------------
async function startBackend(requested) {
  E.requestedBackend = requested;
  tf.wasm.setWasmPaths("/vendor/tfjs-backend-wasm/");
  const order = [requested, ...BACKENDS.filter((b) => b !== requested)];
  const failed = [];
  for (const b of order) {
    let ok = false;
    try { ok = await tf.setBackend(b); await tf.ready(); } catch (err) { ok = false; }
    if (ok && tf.getBackend() === b) {
      E.backend = b; E.backendStarted = b === requested;
      $("runtime").textContent = `backend: ${b}`;
      if (failed.length) {
        const n = $("notice");
        n.textContent = `The ${failed.join(", ")} backend did not start in this browser; running on ${b}.`;
        n.hidden = false;
      }
      return b;
    }
    failed.push(b);
  }
  throw new Error(`No TF.js backend started (tried ${order.join(", ")}).`);
}

// ---- views ----------------------------------------------------------------------------------
function kindOf(info) {
  if (/gate/.test(info.name) && nFeatures === 2) return "gates";
  if (info.task !== "regression" && nFeatures === 2) return "plane";
  return "form";
}

async function renderGates(info, ref) {
  $("demo-title").textContent = `${info.name}: truth table`;
  const table = [[0, 0], [0, 1], [1, 0], [1, 1]];
  const out = await predict(table);
  const refX = ref ? rowsOf(ref.arrays[info.reference.inputs[0]]) : [];
  const refY = ref ? rowsOf(ref.arrays[info.reference.outputs[0]]) : [];
  const yTrue = ref && ref.arrays[info.reference.target_key || "y_true"];
  const trueRows = yTrue ? rowsOf(yTrue) : [];
  const rows = table.map((x, i) => {
    const j = refX.findIndex((r) => r[0] === x[0] && r[1] === x[1]);
    const p = probs(out[i]);
    return { x, probability: p[1], predicted: argmax(p), keras: j >= 0 ? probs(refY[j])[1] : null,
             expected: j >= 0 && j < trueRows.length ? trueRows[j][0] : null };
  });
  E.demo = { kind: "gates", rows };
  $("demo").innerHTML = `
    <table id="truth-table"><thead><tr><th>x1</th><th>x2</th><th>P(1) in browser</th><th>output</th>
      <th>P(1) Keras</th><th>expected</th></tr></thead><tbody>${rows.map((r) => `
      <tr><td>${r.x[0]}</td><td>${r.x[1]}</td><td>${fmt(r.probability)}</td><td><b>${r.predicted}</b></td>
      <td>${r.keras === null ? "–" : fmt(r.keras)}</td>
      <td class="${r.expected === null ? "" : r.expected === r.predicted ? "pass" : "fail"}">${r.expected === null ? "–" : r.expected}</td></tr>`).join("")}
    </tbody></table>
    <h3>Try it</h3>
    <div class="features">
      <label>x1 <input id="g1" type="range" min="0" max="1" step="0.01" value="1"></label>
      <label>x2 <input id="g2" type="range" min="0" max="1" step="0.01" value="1"></label>
    </div>
    <p>P(1) = <span id="gate-live" class="big">…</span></p>`;
  const live = async () => {
    const x = [Number($("g1").value), Number($("g2").value)];
    const p = probs((await predict([x]))[0])[1];
    $("gate-live").textContent = `${fmt(p)} → ${p >= 0.5 ? 1 : 0}   (x = ${x[0]}, ${x[1]})`;
  };
  $("g1").addEventListener("input", live); $("g2").addEventListener("input", live);
  await live();
}

async function renderPlane(info, ref) {
  $("demo-title").textContent = `${info.name}: decision boundary`;
  const W = 420, H = 420, G = 70;
  $("demo").innerHTML = `<canvas id="plane" width="${W}" height="${H}"></canvas>
    <p class="legend"><span><i class="dot" style="background:var(--c0)"></i> class ${esc(labelOf(info, 0))}</span>
      <span><i class="dot" style="background:var(--c1)"></i> class ${esc(labelOf(info, 1))}</span>
      <span class="muted">filled: labelled points · rings: Keras prediction</span></p>
    <p id="click-result" class="big">Click the plane to classify a point.</p>`;
  const pts = ref ? rowsOf(ref.arrays[info.reference.inputs[0]]) : [[-1.5, -1], [2.5, 1.5]];
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const pad = 0.5;
  const plane = { xmin: Math.min(...xs) - pad, xmax: Math.max(...xs) + pad,
                  ymin: Math.min(...ys) - pad, ymax: Math.max(...ys) + pad, width: W, height: H };
  E.plane = plane;
  const toPx = (x, y) => [((x - plane.xmin) / (plane.xmax - plane.xmin)) * W,
                          H - ((y - plane.ymin) / (plane.ymax - plane.ymin)) * H];
  const toData = (px, py) => [plane.xmin + (px / W) * (plane.xmax - plane.xmin),
                              plane.ymin + ((H - py) / H) * (plane.ymax - plane.ymin)];
  const grid = [];
  for (let j = 0; j < G; j++) for (let i = 0; i < G; i++) grid.push(toData(((i + 0.5) * W) / G, ((j + 0.5) * H) / G));
  const gridOut = await predict(grid);
  const ctx = $("plane").getContext("2d");
  const c0 = [59, 111, 216], c1 = [224, 102, 47];
  gridOut.forEach((o, n) => {
    const p = probs(o)[1];
    const mix = c0.map((v, k) => Math.round(255 - (255 - (p >= 0.5 ? c1[k] : c0[k])) * Math.abs(p - 0.5) * 0.9));
    ctx.fillStyle = `rgb(${mix.join(",")})`;
    ctx.fillRect(((n % G) * W) / G, (Math.floor(n / G) * H) / G, W / G + 1, H / G + 1);
  });
  // the boundary itself: cells where the predicted class changes against a neighbour
  ctx.fillStyle = "#1d232b";
  gridOut.forEach((o, n) => {
    const i = n % G, j = Math.floor(n / G);
    const cls = argmax(probs(o));
    if ((i + 1 < G && argmax(probs(gridOut[n + 1])) !== cls) || (j + 1 < G && argmax(probs(gridOut[n + G])) !== cls)) {
      ctx.fillRect(((i + 1) * W) / G - 1, ((j + 1) * H) / G - 1, 2, 2);
    }
  });
  const yTrue = ref && ref.arrays[info.reference.target_key || "y_true"];
  const truth = yTrue ? rowsOf(yTrue).map((r) => r[0]) : [];
  const kerasOut = ref ? rowsOf(ref.arrays[info.reference.outputs[0]]) : [];
  pts.forEach((p, n) => {
    const [px, py] = toPx(p[0], p[1]);
    const cls = n < truth.length ? truth[n] : argmax(probs(kerasOut[n] || [0]));
    ctx.beginPath(); ctx.arc(px, py, 4, 0, 2 * Math.PI);
    const col = cls >= 1 ? "rgb(224,102,47)" : "rgb(59,111,216)";
    if (n < truth.length) { ctx.fillStyle = col; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.stroke(); }
    else { ctx.strokeStyle = col; ctx.lineWidth = 2; ctx.stroke(); ctx.lineWidth = 1; }
  });
  E.demo = { kind: "plane", grid: G, points: pts.length };
  $("plane").addEventListener("click", async (ev) => {
    const r = ev.target.getBoundingClientRect();
    const px = ((ev.clientX - r.left) / r.width) * W, py = ((ev.clientY - r.top) / r.height) * H;
    const [x, y] = toData(px, py);
    const p = probs((await predict([[x, y]]))[0]);
    const cls = argmax(p);
    E.lastClick = { x, y, class: cls, label: labelOf(info, cls), probability: p[cls], probs: p };
    $("click-result").textContent = `(${fmt(x, 2)}, ${fmt(y, 2)}) → class ${labelOf(info, cls)}, p = ${fmt(p[cls], 3)}`;
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(px - 6, py); ctx.lineTo(px + 6, py); ctx.moveTo(px, py - 6); ctx.lineTo(px, py + 6); ctx.stroke();
    ctx.lineWidth = 1;
  });
}

async function renderForm(info, ref) {
  $("demo-title").textContent = `${info.name}: ${info.task === "regression" ? "regression" : "prediction"}`;
  const golden = ref ? rowsOf(ref.arrays[info.reference.inputs[0]]) : [new Array(nFeatures).fill(0)];
  const kerasOut = ref ? rowsOf(ref.arrays[info.reference.outputs[0]]) : [];
  $("demo").innerHTML = `
    <p>Golden row <input id="row" type="number" min="0" max="${golden.length - 1}" value="0" style="width:5rem">
       <span class="muted">(of ${golden.length}; edit any feature below)</span></p>
    <div class="features" id="features">${golden[0].map((v, i) => `
      <label>x${i + 1}<input type="number" step="any" data-i="${i}" value="${+v.toPrecision(9)}"></label>`).join("")}</div>
    <p>Prediction: <span id="prediction" class="big">…</span></p>
    <p class="muted">Keras on the golden row: <span id="keras-row">–</span></p>`;
  const inputs = [...document.querySelectorAll("#features input")];
  const update = async () => {
    const x = inputs.map((el) => Number(el.value));
    if (x.some((v) => !Number.isFinite(v))) { $("prediction").textContent = "enter numbers in every field"; return; }
    const out = (await predict([x]))[0];
    E.demo = { kind: "form", features: x, prediction: out };
    $("prediction").textContent = info.task === "regression" ? out.map((v) => fmt(v)).join(", ")
      : `class ${labelOf(info, argmax(probs(out)))} (p = ${fmt(Math.max(...probs(out)), 3)})`;
  };
  const loadRow = async () => {
    const k = Math.min(Math.max(0, Number($("row").value) | 0), golden.length - 1);
    inputs.forEach((el, i) => { el.value = +golden[k][i].toPrecision(9); });
    $("keras-row").textContent = kerasOut[k] ? kerasOut[k].map((v) => fmt(v)).join(", ") : "–";
    await update();
  };
  inputs.forEach((el) => el.addEventListener("input", update));
  $("row").addEventListener("input", loadRow);
  await loadRow();
}

// ---- parity ---------------------------------------------------------------------------------
async function runParity(info, ref) {
  if (!ref) { $("parity").innerHTML = `<p class="fail">No reference.npz for ${esc(info.name)}: re-run edgekit train.</p>`; return; }
  const xKey = info.reference.inputs[0], yKey = info.reference.outputs[0];
  const x = rowsOf(ref.arrays[xKey]);
  const want = ref.arrays[yKey].data;
  const t0 = performance.now();
  const got = (await predict(x)).flat();
  E.timings.parity_ms = performance.now() - t0;
  if (got.length !== want.length) throw new Error(`Model output has ${got.length} values; the Keras reference ${yKey} has ${want.length}.`);
  // Judged on the server by edgekit.parity.compare with the one tolerance policy: the page
  // only displays the verdict (no second comparator here).
  const verdict = await postJSON(`/api/${encodeURIComponent(info.name)}/compare?precision=${encodeURIComponent(E.precision)}`,
    { outputs: { [yKey.replace(/^out:/, "")]: { shape: [x.length, got.length / x.length], data: Array.from(got) } } },
    "the parity check");
  const res = verdict.outputs[0] || {};
  const pass = verdict.passed, maxAbs = verdict.max_abs_err ?? Infinity, minAtol = verdict.required_atol ?? Infinity;
  const atol = res.atol, rtol = res.rtol, peak = res.scale || 1;
  E.parity = { max_abs_err: maxAbs, atol, rtol, min_atol_to_pass: minAtol, pass, failures: verdict.failures,
               shape: [x.length, got.length / x.length], outputs: got, tolerance_source: verdict.tolerance.source };
  $("parity").innerHTML = `
    <p class="big ${pass ? "pass" : "fail"}" id="parity-verdict">${pass ? "PASS" : "FAIL"}</p>
    <table><tbody>
      <tr><th>golden inputs</th><td>${x.length} rows × ${x[0].length}</td></tr>
      <tr><th>max |browser − Keras|</th><td id="parity-max">${maxAbs.toExponential(2)}</td></tr>
      <tr><th>tolerance (tfjs ${esc(E.precision)})</th><td>atol ${atol.toExponential(1)}${verdict.tolerance.atol_scale === "peak" && peak > 1 ? ` (${verdict.tolerance.atol.toExponential(0)} × peak ${fmt(peak, 1)})` : ""}, rtol ${rtol.toExponential(0)}</td></tr>
      <tr><th>smallest atol that passes</th><td>${Math.max(0, minAtol).toExponential(2)}</td></tr>
      <tr><th>backend · time</th><td>${esc(E.backend)} · ${E.timings.parity_ms.toFixed(1)} ms</td></tr>
    </tbody></table>`;
}

// ---- main -----------------------------------------------------------------------------------
async function main() {
  if (typeof tf === "undefined") {
    throw new Error("TF.js did not load from /vendor/tfjs/tf.min.js: run `edgekit setup-js` (or make setup) and restart edgekit serve-web.");
  }
  E.tfjsVersion = tf.version.tfjs;
  const q = new URLSearchParams(location.search);
  const fromPath = location.pathname.match(/^\/example\/([^/]+)/);
  const { examples } = await getJSON("/api/examples", "the example list");
  const names = examples.map((e) => e.name);
  const sel = $("example");
  sel.innerHTML = names.map((n) => `<option>${esc(n)}</option>`).join("");
  if (!names.length) throw new Error("No examples in the artifacts directory: run `edgekit train all --out DIR` then `edgekit export`, and serve that DIR.");
  const hasTfjs = (e) => e.exports.some((a) => a.format === "tfjs");
  const wanted = q.get("example") || (fromPath && decodeURIComponent(fromPath[1])) || (examples.find(hasTfjs) || examples[0]).name;
  const info = examples.find((e) => e.name === wanted);
  if (!info) throw new Error(`Unknown example "${wanted}". Available: ${names.join(", ")}.`);
  sel.value = info.name;
  E.example = info.name;
  nFeatures = info.inputs[0].shape[info.inputs[0].shape.length - 1];

  const variants = info.exports.filter((a) => a.format === "tfjs");
  $("precision").innerHTML = variants.map((a) => `<option>${esc(a.precision)}</option>`).join("");
  const reqBackend = BACKENDS.includes(q.get("backend")) ? q.get("backend") : "webgl";
  $("backend").value = reqBackend;
  const nav = () => {
    const p = new URLSearchParams({ example: sel.value, backend: $("backend").value });
    if (sel.value === info.name && $("precision").value) p.set("precision", $("precision").value);
    location.assign(`/?${p}`);
  };
  for (const id of ["example", "precision", "backend"]) $(id).addEventListener("change", nav);

  if (!variants.length) {
    const why = (info.failures || []).filter((f) => f.format === "tfjs").map((f) => `${f.precision}: ${f.error}`);
    throw new Error(`${info.name} has no TF.js export. ${info.manifest_error || ""} ${why.length ? `The converter failed: ${why.join("; ")}` : "Run `edgekit export` with the tfjs format."}`);
  }
  const variant = variants.find((a) => a.precision === (q.get("precision") || "fp32")) || variants[0];
  $("precision").value = variant.precision;
  E.precision = variant.precision;

  setStatus("Starting the TF.js backend…");
  await startBackend(reqBackend);

  const modelUrl = `/artifacts/${encodeURIComponent(info.name)}/exports/${variant.path.replace(/\/$/, "")}${variant.path.endsWith(".json") ? "" : "/model.json"}`;
  E.modelUrl = modelUrl;
  setStatus(`Loading ${modelUrl}…`);
  const t0 = performance.now();
  try {
    // TF.js reads a weight response without checking its status: a 404 page would become the
    // weights. Refuse any failed request so a missing shard is an error, not a garbage model.
    const fetchFunc = async (url, init) => {
      const resp = await fetch(url, init);
      if (!resp.ok) throw new Error(`${new URL(String(url), location.href).pathname}: HTTP ${resp.status} ${resp.statusText}`);
      return resp;
    };
    model = await tf.loadGraphModel(modelUrl, { fetchFunc });
  } catch (err) {
    throw new Error(`Could not load the TF.js model of ${info.name} (${variant.precision}) from ${modelUrl}:\n${err.message}\n` +
      "The export is incomplete or corrupted (a missing weight shard?): re-run `edgekit export` for this example.");
  }
  E.timings.load_ms = performance.now() - t0;

  const ref = info.has_reference
    ? await getJSON(`/api/${encodeURIComponent(info.name)}/reference.json?precision=${encodeURIComponent(variant.precision)}`, "the Keras reference")
    : null;
  setStatus("Running…");
  const kind = kindOf(info);
  if (kind === "gates") await renderGates(info, ref);
  else if (kind === "plane") await renderPlane(info, ref);
  else await renderForm(info, ref);
  await runParity(info, ref);
  E.status = "ready"; E.ready = true;
  setStatus(`${info.name} · tfjs ${variant.precision} · backend ${E.backend} · TF.js ${E.tfjsVersion} · model loaded in ${E.timings.load_ms.toFixed(0)} ms`);
}

main().catch(fail);

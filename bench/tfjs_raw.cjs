#!/usr/bin/env node
// edgekit bench: time a TF.js graph model inside Node, with no Python and no IPC in the loop.
//
//   node tfjs_raw.cjs SPEC.json            (NODE_PATH = js/node_modules)
//
// SPEC: {backend: "cpu"|"wasm", dir, inputs: [{name, dtype, x1: {shape, file, offset, nbytes},
//        xn: {...}}], budget: {repeat, min_time, max_time, warmup, warmup_time, throughput_repeat},
//        mode: "bench"|"rss"}
// Prints one JSON line on stdout: {load_s, latency: {p50_ms, p99_ms, mean_ms, min_ms, calls},
// throughput: {rows_per_s, batch_ms, calls, batch}, tfjs, backend, maxrss_kb}. The timed call is
// what a Node app does per request: tensor from a typed array, executeAsync, data(), dispose.
'use strict';

const fs = require('fs');
const path = require('path');

for (const level of ['log', 'info', 'warn', 'debug']) {
  console[level] = (...args) => process.stderr.write(args.join(' ') + '\n');
}

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const tf = require('@tensorflow/tfjs');
const {loadGraphModelDir} = require(path.join(__dirname, '..', 'runtime', 'tfjs_load.cjs'));
const ARRAYS = {float32: Float32Array, int32: Int32Array};

async function initBackend() {
  if (spec.backend === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
    wasm.setWasmPaths(dir + path.sep);
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);  // as edgekit's runner does
  }
  if (!(await tf.setBackend(spec.backend)) || tf.getBackend() !== spec.backend) {
    throw new Error(`could not initialise the ${spec.backend} backend`);
  }
  await tf.ready();
}

async function loadModel(dir) {
  const {model, json} = await loadGraphModelDir(tf, dir);
  const outs = json.signature && json.signature.outputs ? Object.keys(json.signature.outputs).sort()
    : model.outputs.map((o) => o.name);
  return {model, outs};
}

function readArray(a, which) {
  const d = a[which];
  const buf = fs.readFileSync(d.file).subarray(d.offset, d.offset + d.nbytes);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  return {name: a.name, dtype: a.dtype, shape: d.shape, data: new ARRAYS[a.dtype](ab)};
}

function caller(model, outs, arrays) {
  return async () => {
    const feeds = {};
    for (const a of arrays) feeds[a.name] = tf.tensor(a.data, a.shape, a.dtype);
    let result = await model.executeAsync(feeds, outs);
    if (!Array.isArray(result)) result = [result];
    for (const t of result) { await t.data(); t.dispose(); }
    for (const t of Object.values(feeds)) t.dispose();
  };
}

function pct(sorted, q) {
  const pos = (sorted.length - 1) * q / 100;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function sample(fn, repeat, minTime, maxTime) {
  const out = [];
  const start = process.hrtime.bigint();
  for (;;) {
    const t0 = process.hrtime.bigint();
    await fn();
    const t1 = process.hrtime.bigint();
    out.push(Number(t1 - t0) * 1e-9);
    const elapsed = Number(t1 - start) * 1e-9;
    if (out.length >= 50000 || (out.length >= repeat && elapsed >= minTime)) break;
    if (elapsed >= maxTime && out.length >= (spec.budget.min_samples || 5)) break;
  }
  return out.sort((a, b) => a - b);
}

async function warm(fn, calls, seconds, cap) {
  const start = Date.now();
  for (let i = 0; i < Math.max(1, calls); i++) {
    await fn();
    if (Date.now() - start >= cap * 1000) return;  // a slow call is not warmed up ten times
  }
  const end = start + seconds * 1000;
  while (Date.now() < end) await fn();
}

async function main() {
  await initBackend();
  const b = spec.budget;
  const t0 = process.hrtime.bigint();
  const {model, outs} = await loadModel(spec.dir);
  const loadS = Number(process.hrtime.bigint() - t0) * 1e-9;
  const f1 = caller(model, outs, spec.inputs.map((a) => readArray(a, 'x1')));
  let xn = spec.inputs.map((a) => readArray(a, 'xn'));
  let fn = caller(model, outs, xn);
  let rows = xn[0].shape[0];
  const reply = {load_s: loadS, tfjs: tf.version.tfjs, backend: tf.getBackend(), node: process.version};
  if (spec.mode === 'rss') {
    for (let i = 0; i < 5; i++) await f1();
    await fn();
  } else {
    await warm(f1, b.warmup, b.warmup_time, b.max_time / 4);
    const s = await sample(f1, b.repeat, b.min_time, b.max_time);
    reply.latency = {p50_ms: pct(s, 50) * 1e3, p99_ms: pct(s, 99) * 1e3,
      mean_ms: s.reduce((x, y) => x + y, 0) / s.length * 1e3, min_ms: s[0] * 1e3, calls: s.length};
    // the throughput batch: the largest power of two whose call takes about 0.25 s (edgekit.bench.timing)
    let n = 1;
    while (n * 2 <= rows && n * 2 * pct(s, 50) <= (b.throughput_call_s || 0.25)) n *= 2;
    if (n < rows) {
      xn = xn.map((a) => {
        const per = a.data.length / rows;
        return {...a, shape: [n, ...a.shape.slice(1)], data: a.data.slice(0, n * per)};
      });
      fn = caller(model, outs, xn);
      rows = n;
    }
    await warm(fn, 2, b.warmup_time, b.max_time / 4);
    const t = await sample(fn, b.throughput_repeat, b.min_time / 2, b.max_time);
    const med = pct(t, 50);
    reply.throughput = {rows_per_s: med > 0 ? rows / med : null, batch_ms: med * 1e3, calls: t.length, batch: rows};
  }
  reply.maxrss_kb = process.resourceUsage().maxRSS;
  process.stdout.write(JSON.stringify(reply) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});

#!/usr/bin/env node
// edgekit's TF.js runner: one long-lived Node process per backend, serving many requests.
//
//   node tfjs_runner.cjs --backend cpu|wasm [--wasm-dir DIR]     (NODE_PATH = js/node_modules)
//
// Protocol on stdin/stdout, one frame per message in each direction:
//   uint32 LE header length | uint32 LE payload length | JSON header (utf-8) | binary payload
// Arrays travel in the payload as raw little-endian bytes described in the header by
// {name, dtype, shape, offset, nbytes}, so NaN/Inf and every bit are preserved.
// Requests: {id, op: "hello"} | {id, op: "load", dir} | {id, op: "predict", handle, arrays}
//           | {id, op: "dispose", handle}
//           | {id, op: "execute", handle, arrays, names}: the named nodes' values (edgekit explain).
// Replies:  {id, ok: true, ...} or {id, ok: false, error}. Logs go to stderr only: stdout
// carries nothing but frames (console.* is redirected).
'use strict';

const path = require('path');
const util = require('util');

for (const level of ['log', 'info', 'warn', 'debug']) {
  console[level] = (...args) => {
    const text = util.format(...args);
    // The cpu backend's "install tfjs-node" banner is noise in error messages: drop it.
    if (!text.includes('tfjs-node for more details')) process.stderr.write(text + '\n');
  };
}

function parseArgs(argv) {
  const opts = {backend: 'cpu', wasmDir: null};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--backend') opts.backend = argv[++i];
    else if (argv[i] === '--wasm-dir') opts.wasmDir = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const tf = require('@tensorflow/tfjs');
const {loadGraphModelDir} = require('./tfjs_load.cjs');

async function initBackend() {
  if (opts.backend === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    const dir = opts.wasmDir ||
        path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
    // In Node the emscripten loader reads the .wasm with fs: a directory path, not a URL.
    wasm.setWasmPaths(dir.endsWith(path.sep) ? dir : dir + path.sep);
    // One process per backend is shared by many models: keep it single-threaded and deterministic.
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  } else if (opts.backend !== 'cpu') {
    throw new Error(`unknown backend ${opts.backend} (expected cpu or wasm)`);
  }
  const ok = await tf.setBackend(opts.backend);
  if (!ok || tf.getBackend() !== opts.backend) {
    throw new Error(`could not initialise the ${opts.backend} backend (got ${tf.getBackend()})`);
  }
  await tf.ready();
}

const TF_DTYPES = {DT_FLOAT: 'float32', DT_INT32: 'int32', DT_BOOL: 'bool', DT_HALF: 'float16',
  DT_INT64: 'int64', DT_UINT8: 'uint8', DT_INT8: 'int8', DT_DOUBLE: 'float64'};
const ARRAYS = {float32: Float32Array, int32: Int32Array, bool: Uint8Array};

const models = new Map();
let nextHandle = 1;

function sigInfos(sig) {
  return Object.keys(sig).sort().map((key) => ({
    name: key,
    shape: ((sig[key].tensorShape || {}).dim || []).map((d) => (Number(d.size) < 0 ? null : Number(d.size))),
    dtype: TF_DTYPES[sig[key].dtype] || String(sig[key].dtype),
  }));
}

function nodeInfos(nodes) {
  return nodes.map((n) => ({name: n.name, shape: (n.shape || []).map((d) => (d < 0 ? null : d)),
    dtype: n.dtype}));
}

async function load(dir) {
  const {model, json} = await loadGraphModelDir(tf, dir);
  const sig = json.signature;
  const inputs = sig && sig.inputs ? sigInfos(sig.inputs) : nodeInfos(model.inputs);
  const outputs = sig && sig.outputs ? sigInfos(sig.outputs) : nodeInfos(model.outputs);
  const handle = nextHandle++;
  models.set(handle, {model, inputs, outputs});
  return {handle, inputs, outputs};
}

async function predict(req, payload, nodeNames) {
  const entry = models.get(req.handle);
  if (!entry) throw new Error(`no model with handle ${req.handle} (disposed?)`);
  const feeds = {};
  const outArrays = [];
  const chunks = [];
  try {
    for (const a of req.arrays) {
      const Ctor = ARRAYS[a.dtype];
      if (!Ctor) throw new Error(`unsupported input dtype ${a.dtype} for ${a.name}`);
      // ArrayBuffer.slice copies, which also aligns the view.
      const ab = payload.buffer.slice(payload.byteOffset + a.offset, payload.byteOffset + a.offset + a.nbytes);
      feeds[a.name] = tf.tensor(new Ctor(ab), a.shape, a.dtype);
    }
    const names = nodeNames || entry.outputs.map((o) => o.name);
    let result = await entry.model.executeAsync(feeds, names);
    if (!Array.isArray(result)) result = [result];
    let offset = 0;
    for (let i = 0; i < names.length; i++) {
      const t = result[i];
      const data = await t.data();
      const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      outArrays.push({name: names[i], dtype: t.dtype === 'bool' ? 'bool' : t.dtype, shape: t.shape,
        offset, nbytes: buf.length});
      chunks.push(buf);
      offset += buf.length;
      t.dispose();
    }
  } finally {
    for (const t of Object.values(feeds)) t.dispose();
  }
  return [{arrays: outArrays}, Buffer.concat(chunks)];
}

async function handle(req, payload) {
  switch (req.op) {
    case 'hello':
      return [{tfjs: tf.version.tfjs, backend: tf.getBackend(), node: process.version}, null];
    case 'load':
      return [await load(req.dir), null];
    case 'predict':
      return predict(req, payload);
    case 'execute':
      return predict(req, payload, req.names);
    case 'dispose': {
      const entry = models.get(req.handle);
      if (entry) entry.model.dispose();
      models.delete(req.handle);
      return [{}, null];
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

function send(header, payload) {
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const body = payload || Buffer.alloc(0);
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32LE(head.length, 0);
  prefix.writeUInt32LE(body.length, 4);
  process.stdout.write(Buffer.concat([prefix, head, body]));
}

let pending = Buffer.alloc(0);
let queue = initBackend();
queue.catch((err) => {
  process.stderr.write(`edgekit tfjs runner: ${err && err.stack || err}\n`);
  process.exit(3);
});

process.stdin.on('data', (data) => {
  pending = pending.length ? Buffer.concat([pending, data]) : data;
  while (pending.length >= 8) {
    const hlen = pending.readUInt32LE(0);
    const blen = pending.readUInt32LE(4);
    if (pending.length < 8 + hlen + blen) break;
    const req = JSON.parse(pending.subarray(8, 8 + hlen).toString('utf8'));
    const payload = Buffer.from(pending.subarray(8 + hlen, 8 + hlen + blen));
    pending = pending.subarray(8 + hlen + blen);
    // Requests run one after another, in arrival order.
    queue = queue.then(() => handle(req, payload)).then(
        ([header, body]) => send({id: req.id, ok: true, ...header}, body),
        (err) => send({id: req.id, ok: false, error: String(err && err.message || err)}, null));
  }
});
process.stdin.on('end', () => {
  queue.finally(() => process.exit(0));
});

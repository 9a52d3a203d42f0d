// Run TF.js graph models in Node (cpu backend) for edgekit's export tests.
// stdin: JSON list of jobs [{"dir": MODEL_DIR, "inputs": {name: {"shape": [..], "b64": float32 LE}}}]
// stdout: JSON list [{"inputs": [names], "outputs": {name: {"shape", "b64"}}, "metadata": {...}}]
// Files are read with fs and handed to tf.io.fromMemory (no tfjs-node: it cannot install here).
// Needs NODE_PATH=<repo>/js/node_modules.
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");

function b64(arr) {
  const f = Float32Array.from(arr);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString("base64");
}

async function run(job) {
  const mj = JSON.parse(fs.readFileSync(path.join(job.dir, "model.json"), "utf8"));
  const specs = [];
  const bufs = [];
  for (const group of mj.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) bufs.push(fs.readFileSync(path.join(job.dir, p)));
  }
  const all = Buffer.concat(bufs);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: mj.modelTopology, weightSpecs: specs, weightData, format: mj.format,
    generatedBy: mj.generatedBy, convertedBy: mj.convertedBy, signature: mj.signature,
    userDefinedMetadata: mj.userDefinedMetadata,
  }));
  const feed = {};
  for (const [name, a] of Object.entries(job.inputs)) {
    const raw = Buffer.from(a.b64, "base64");
    const arr = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    feed[name] = tf.tensor(arr, a.shape, "float32");
  }
  const names = model.outputs.map((o) => o.name);
  let out = model.execute(feed, names);
  if (!Array.isArray(out)) out = [out];
  const result = {inputs: model.inputs.map((i) => i.name), outputs: {}, metadata: model.metadata || null};
  names.forEach((n, i) => {
    result.outputs[n] = {shape: out[i].shape, b64: b64(out[i].dataSync())};
  });
  tf.dispose(out);
  model.dispose();
  return result;
}

async function main() {
  await tf.setBackend("cpu");
  const jobs = JSON.parse(fs.readFileSync(0, "utf8"));
  const results = [];
  for (const job of jobs) results.push(await run(job));
  process.stdout.write(JSON.stringify(results));
}
main().catch((e) => { process.stderr.write(String((e && e.stack) || e) + "\n"); process.exit(1); });

// Load a TF.js graph model from a directory without tfjs-node: read model.json and its weight
// shards and hand them to tf.io.fromMemory. Shared by runtime/tfjs_runner.cjs (the adapter's
// Node process) and bench/tfjs_raw.cjs (raw timing), so both refuse the same hostile files.
'use strict';

const fs = require('fs');
const path = require('path');

async function loadGraphModelDir(tf, dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  if (json.format !== 'graph-model') {
    throw new Error(`${dir}/model.json is a ${json.format}, expected a graph-model`);
  }
  const specs = [];
  const buffers = [];
  const root = fs.realpathSync(dir);
  for (const group of json.weightsManifest || []) {
    specs.push(...group.weights);
    for (const p of group.paths) {
      // shards must stay inside the model directory: no absolute path, no '..', no symlink out
      const full = fs.realpathSync(path.resolve(root, p));
      if (path.isAbsolute(p) || !full.startsWith(root + path.sep)) {
        throw new Error(`weight shard path ${JSON.stringify(p)} leaves the model directory ${root}`);
      }
      buffers.push(fs.readFileSync(full));
    }
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs: specs, weightData, format: json.format,
    generatedBy: json.generatedBy, convertedBy: json.convertedBy, signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata, modelInitializer: json.modelInitializer,
    initializerSignature: json.initializerSignature,
  }));
  return {model, json};
}

module.exports = {loadGraphModelDir};

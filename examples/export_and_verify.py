"""edgekit's Python API in five lines: export a model, verify every file, run one on its runtime.

    python examples/export_and_verify.py artifacts/moons_h3      # after `edgekit train moons_h3`

Prints the verdict per variant and a prediction from the TFLite file; exits 1 if a row failed.
"""

import sys

import numpy as np

import edgekit

source = sys.argv[1] if len(sys.argv) > 1 else "artifacts/moons_h3"

exported = edgekit.export(source, formats=["tflite", "onnx"])           # -> ExportReport
report = edgekit.verify(exported.out_dir)                               # -> VerifyReport
for row in report.rows:
    print(f"{row.format:7} {row.precision:13} {row.status:5} max|err| {row.max_abs_err:.2e}")
with edgekit.load(exported.out_dir / "tflite" / "model_fp32.tflite") as runner:
    x = np.zeros((1, *runner.inputs[0].shape[1:]), dtype=runner.inputs[0].dtype)
    print("tflite says", runner.predict(x)[runner.outputs[0].name].tolist())
print(report.summary())
sys.exit(0 if report else 1)

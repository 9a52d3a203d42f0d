"""Write an example's SavedModel on the TensorFlow backend from its backend-neutral ``model.keras``.

A model trained on JAX or torch (or inside a tf.distribute strategy) is saved as
``model.keras``; this module, run in a separate process with ``KERAS_BACKEND=tensorflow``,
loads it (``compile=False``: a torch-saved optimizer lives under a torch-only path) and runs
``model.export`` into ``saved_model/1``, so the artifact layout is the same whatever trained
the model and every converter can read it. (JAX's own ``tf_saved_model`` export is a single
XlaCallModule op that only TFLite converts.) It also runs the golden inputs through the
reloaded model and reports how far that is from the training backend's predictions.

Protocol: one JSON request per line on stdin,
``{"dir": ..., "golden": "<file>.npy", "saved_model": "<dir>"}``; one JSON line back per
request on stdout: ``{"ok": true, "inputs": [...], "outputs": [...], "predictions": "<file>.npy"}``
or ``{"ok": false, "error": "..."}``. :class:`TFExporter` is the client: one process per
training worker, started on first use (TensorFlow's import is paid once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def _serve() -> int:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = os.fdopen(os.dup(1), "w")  # replies only; anything the libraries print goes to stderr
    os.dup2(2, 1)
    import keras

    from edgekit.train.common import _quiet, _signature_info

    for line in sys.stdin:
        req = json.loads(line)
        try:
            model = keras.models.load_model(Path(req["dir"]) / "model.keras", compile=False, safe_mode=True)
            sm = Path(req["saved_model"])
            sm.parent.mkdir(parents=True, exist_ok=True)
            with _quiet():
                model.export(str(sm), format="tf_saved_model", verbose=False)
            ins, outs = _signature_info(sm)
            golden = np.load(req["golden"], allow_pickle=False)
            pred_path = str(req["golden"]) + ".tf.npy"
            np.save(pred_path, np.asarray(model(golden, training=False), np.float32))
            reply = {"ok": True, "inputs": ins, "outputs": outs, "predictions": pred_path}
        except Exception as exc:  # noqa: BLE001 - reported to the client, which raises
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        keras.backend.clear_session()
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


class TFExporter:
    """Client of one ``python -m edgekit.train.tf_export`` process (started lazily, closed by :meth:`close`).

    Args:
        log: a file for the process's stderr (TensorFlow's chatter) (default: discarded).
    """

    def __init__(self, log: Path | None = None):
        self._log = log
        self._proc: subprocess.Popen | None = None

    def export(self, example_dir: Path, golden: np.ndarray) -> tuple[list[dict], list[dict], np.ndarray]:
        """SavedModel into ``example_dir/saved_model/1``; return (inputs, outputs, TF predictions on ``golden``)."""
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
            env.pop("TF_CONFIG", None)  # the exporter is no member of a multi-worker cluster
            err = open(self._log, "a") if self._log else subprocess.DEVNULL
            self._proc = subprocess.Popen([sys.executable, "-m", "edgekit.train.tf_export"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            if self._log:
                err.close()
        gpath = Path(example_dir) / ".golden-export.npy"
        np.save(gpath, np.asarray(golden, np.float32))
        req = {"dir": str(example_dir), "golden": str(gpath), "saved_model": str(Path(example_dir) / "saved_model/1")}
        self._proc.stdin.write(json.dumps(req) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        try:
            if not line:
                raise RuntimeError(f"the TensorFlow export process died (exit {self._proc.wait()}); see train.log")
            reply = json.loads(line)
            if not reply["ok"]:
                raise RuntimeError(f"export of {example_dir.name} on the TensorFlow backend failed: {reply['error']}")
            pred = np.load(reply["predictions"], allow_pickle=False)
            os.unlink(reply["predictions"])
        finally:
            gpath.unlink(missing_ok=True)
        return reply["inputs"], reply["outputs"], pred

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


if __name__ == "__main__":
    sys.exit(_serve())

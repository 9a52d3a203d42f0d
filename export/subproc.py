"""An export in a child Python process on the TensorFlow backend, for processes running Keras on JAX or torch.

Keras fixes its backend when it is imported, and edgekit exports under TensorFlow (the
converters read a TensorFlow SavedModel). A ``.keras`` file holds backend-neutral weights, so
:func:`export_in_subprocess` saves a live model to a temporary ``.keras`` (a file is used as
is), runs ``python -m edgekit.export.subproc REQUEST RESULT`` with ``KERAS_BACKEND=tensorflow``,
and rebuilds the :class:`~edgekit.export.base.ExportReport` — or the same
:class:`~edgekit.core.errors.EdgekitError` — from the child's JSON answer. Requests and answers
are JSON files; nothing is pickled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekit.core import errors
from edgekit.core.text import tail


def needs_subprocess(spec) -> bool:
    """True for a Keras source when Keras in this process runs (or will run) on another backend."""
    if spec.kind not in ("keras", "live"):
        return False
    keras = sys.modules.get("keras")
    if keras is not None:
        return keras.backend.backend() != "tensorflow"
    return os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow"


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def export_in_subprocess(spec, out: Path | None, kwargs: dict, progress=None):
    """Run :func:`edgekit.export.api.export_model` for ``spec`` in a TensorFlow-backend child process.

    Raises:
        EdgekitError: the child's error, re-raised with the same class and message.
        RuntimeFailure: the child crashed (its output's last lines are in the message).
    """
    from edgekit.export import source as source_mod
    from edgekit.export.base import ExportReport, VariantResult

    out = Path(out) if out is not None else source_mod.default_out(spec)
    with tempfile.TemporaryDirectory(prefix="edgekit-export-") as td:
        source, as_live = spec.path, None
        if spec.kind == "live":
            source = Path(td) / f"{spec.name}.keras"
            try:
                spec.model.save(source)
            except Exception as exc:  # noqa: BLE001 - say why instead of a traceback
                raise errors.InputError("cannot save the live model for the TensorFlow export process",
                                        got=f"model.save: {exc}",
                                        expected="a model Keras can save (custom classes registered)") from exc
            as_live = spec.display
        request = {"source": str(source), "out": str(out.resolve()), "_as_live": as_live,
                   **_jsonable(kwargs)}
        req, res = Path(td) / "request.json", Path(td) / "result.json"
        req.write_text(json.dumps(request))
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        quiet = kwargs.get("quiet", True)
        proc = subprocess.run([sys.executable, "-m", "edgekit.export.subproc", str(req), str(res)], env=env,
                              capture_output=quiet, text=True, check=False)
        if not res.is_file():
            output = tail((proc.stdout or "") + (proc.stderr or ""), 6)
            raise errors.RuntimeFailure("the TensorFlow export process failed",
                                        got=f"exit code {proc.returncode}: {output}")
        answer = json.loads(res.read_text())
    if "error" in answer:
        e = answer["error"]
        cls = getattr(errors, e["type"], errors.EdgekitError)
        raise cls(e["what"], e.get("got"), e.get("expected"))
    rep = answer["report"]
    results = tuple(VariantResult(**r) for r in rep["results"])
    if progress is not None:
        for r in results:
            progress(r)
    return ExportReport(source=Path(as_live or str(spec.path)), out_dir=Path(rep["out_dir"]), results=results,
                        seconds=float(rep["seconds"]), kind=rep.get("kind", spec.kind),
                        reference_error=rep.get("reference_error"), preflight=tuple(rep.get("preflight", ())))


def main(argv: list[str]) -> int:
    """Child side: read the request, export, write the report or the error as JSON."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgekit.export.api import export_model

    req = json.loads(Path(argv[0]).read_text())
    for key in ("calibration", "inputs"):
        if req.get(key) is not None:
            req[key] = Path(req[key])
    source, out = req.pop("source"), Path(req.pop("out"))
    try:
        report = export_model(Path(source), out, **req)
        answer = {"report": report.to_dict()}
    except errors.EdgekitError as exc:
        answer = {"error": {"type": type(exc).__name__, "what": exc.what,
                            "got": None if exc.got is None else str(exc.got),
                            "expected": None if exc.expected is None else str(exc.expected)}}
    Path(argv[1]).write_text(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What to measure: the cases (one per bench.json row) of every example under the given dirs.

For each export manifest (found like ``edgekit verify`` finds them) the cases are, in order:
the baselines (Keras ``model.predict``, the direct Keras call ``model(x, training=False)``,
the TF SavedModel ``serving_default`` signature called directly), then per exported variant
the edgekit adapter and the raw runtime call without the adapter (LiteRT ``set_tensor`` /
``invoke`` / ``get_tensor``, onnxruntime ``session.run``, TF.js ``executeAsync`` timed inside
Node), TF.js on both the ``cpu`` and ``wasm`` backends. Core ML gets only the adapter row,
labelled as the reference evaluator it is off macOS. Variants whose conversion failed, whose
file is missing or whose checksum does not match become cases with a preset ``error``.

A case is a plain JSON-able dict, so it can be handed to the worker and probe processes.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.bench.inputs import write_inputs
from edgekit.core.errors import EdgekitError, InputError
from edgekit.parity.verify import REFERENCE_NAME, TFJS_BACKENDS, find_manifests
from edgekit.runtime import manifest as mf

COREML_NOTE = ("reference evaluator: edgekit's numpy walk of the ML Program, for parity only; "
               "its speed says nothing about Core ML on an iPhone or a Mac")
RAW_NOTE = {
    "tflite": "LiteRT Interpreter set_tensor/invoke/get_tensor on an input already in the tensor's "
              "dtype (int8 models: pre-quantized), no edgekit adapter",
    "onnx": "onnxruntime InferenceSession.run, no edgekit adapter",
    "tfjs": "executeAsync + data() timed inside Node (no Python, no IPC), no edgekit adapter",
}
RAW_FORMATS = tuple(RAW_NOTE)
BASELINES = (
    ("keras.predict", "keras", "Keras model.predict(x)"),
    ("keras.call", "keras", "Keras model(x, training=False)"),
    ("savedmodel.signature", "savedmodel", "TF SavedModel serving_default signature"),
)


def case_key(c: dict) -> str:
    """Stable identity of a case (without the thread setting)."""
    return "|".join(str(c.get(k) or "-") for k in ("example", "format", "precision", "backend", "runner"))


def _tree_size(p: Path) -> int | None:
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return None


def _example_info(parent: Path) -> dict:
    f = parent / "example.json"
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError("example.json is not valid JSON", got=f"{f}: {exc}") from exc


# ---------------------------------------------------------------- parity from report.json
def _report_candidates(man: mf.Manifest, dirs: list[Path]) -> list[Path]:
    exports = man.root
    cands = [exports / "report.json", exports.parent / "report.json", exports.parent.parent / "report.json"]
    cands += [Path(d) / "report.json" for d in dirs]
    seen, out = set(), []
    for c in cands:
        r = c.resolve()
        if r not in seen and c.is_file():
            seen.add(r)
            out.append(c)
    return out


class ParityIndex:
    """Parity rows of every ``report.json`` near the manifests, keyed by (example, format, precision, backend)."""

    def __init__(self):
        self.rows: dict[tuple, dict] = {}
        self.loaded: dict[Path, float] = {}

    def add_reports(self, man: mf.Manifest, dirs: list[Path]) -> None:
        for path in _report_candidates(man, dirs):
            rp = path.resolve()
            if rp in self.loaded:
                continue
            try:
                rows = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            self.loaded[rp] = path.stat().st_mtime
            for r in rows if isinstance(rows, list) else []:
                if isinstance(r, dict) and "example" in r and "format" in r:
                    key = (r["example"], r["format"], r.get("precision"), r.get("backend"))
                    self.rows.setdefault(key, {**r, "_report": str(path), "_mtime": self.loaded[rp]})

    def lookup(self, example: str, fmt: str, precision: str, backend: str | None, manifest_mtime: float) -> dict:
        """The parity summary of one variant: status pass/fail/error/unknown plus its figures."""
        r = self.rows.get((example, fmt, precision, backend))
        if r is None:
            return {"status": "unknown", "note": "no verify report row (run edgekit verify)"}
        out = {"status": r.get("status", "unknown"), "metric": r.get("metric"),
               "metric_keras": r.get("metric_keras"), "metric_format": r.get("metric_format"),
               "max_abs_err": r.get("max_abs_err"), "atol": r.get("atol"), "report": r["_report"],
               "message": r.get("message") or ""}
        if r["_mtime"] < manifest_mtime:
            out.update(status="unknown", note=f"report.json older than the export manifest "
                                              f"(was {r.get('status')}); re-run edgekit verify")
        return out


# ---------------------------------------------------------------- cases
def build(dirs: list[Path], work: Path, formats: list[str] | None = None,
          baselines: bool = True, unsafe: bool = False) -> list[dict]:
    """Every case under ``dirs`` (artifacts roots, example dirs or exports dirs).

    Args:
        dirs: where to look for ``exports/manifest.json``.
        work: a scratch directory; one inputs file per manifest is written there.
        formats: only these export formats (default None: all); baselines are kept.
        baselines: add the Keras and SavedModel baseline cases (default True).
        unsafe: Keras baselines load with ``safe_mode=False`` (default False).

    Raises:
        InputError: a directory holds no manifest, or a manifest or reference is unreadable.
    """
    manifests, seen = [], set()
    for d in dirs:
        for m in find_manifests(Path(d)):
            if m.resolve() not in seen:
                seen.add(m.resolve())
                manifests.append(m)
    parity = ParityIndex()
    cases: list[dict] = []
    for mi, mpath in enumerate(manifests):
        man = mf.load(mpath)
        parity.add_reports(man, dirs)
        parent = man.root.parent
        info = _example_info(parent)
        example_dir = parent if info or (parent / REFERENCE_NAME).is_file() else None
        example = str(info.get("name") or man.source.get("example") or (parent.name if example_dir
                                                                         else man.root.name))
        inputs_file = work / f"inputs-{mi}.npz"
        write_inputs(man, example_dir, inputs_file)
        mtime = mpath.stat().st_mtime
        keras_file = example_dir / "model.keras" if example_dir else None
        sm = _saved_model_dir(man, example_dir)
        common = {"example": example, "example_dir": str(example_dir) if example_dir else None,
                  "inputs_file": str(inputs_file), "task": info.get("task") or man.source.get("task"),
                  "unsafe": bool(unsafe), "manifest": str(mpath), "sources": {
                      "keras": str(keras_file) if keras_file and keras_file.is_file() else None,
                      "saved_model": str(sm) if sm else None}}
        if baselines:
            cases += _baseline_cases(man, example_dir, common)
        for art in man.artifacts:
            if formats and art.format not in formats:
                continue
            cases += _artifact_cases(man, art, common, parity, mtime)
        for f in man.failures:
            if formats and f.get("format") not in formats:
                continue
            backends = TFJS_BACKENDS if f.get("format") == "tfjs" else (None,)
            for b in backends:
                cases.append(_case(common, "adapter", "adapter", f.get("format", "?"), f.get("precision", "?"),
                                   b, None, None, error=f"conversion failed: {f.get('error', '')}",
                                   parity={"status": "error", "note": "conversion failed"}))
    return cases


def _case(common: dict, kind: str, runner: str, fmt: str, precision: str, backend: str | None,
          path: Path | None, size: int | None, label: str = "", note: str = "", error: str | None = None,
          parity: dict | None = None) -> dict:
    c = {**common, "kind": kind, "runner": runner, "format": fmt, "precision": precision, "backend": backend,
         "path": str(path) if path else None, "size_bytes": size, "label": label, "note": note,
         "error": error, "parity": parity or {"status": "unknown"}}
    c["key"] = case_key(c)
    return c


def _saved_model_dir(man: mf.Manifest, example_dir: Path | None) -> Path | None:
    cands = []
    if example_dir is not None:
        cands.append(example_dir / "saved_model" / "1")
    for s in (man.source.get("saved_model"), man.source.get("path")):
        if s:
            p = Path(s)
            cands += [p] if p.is_absolute() else [man.root / p, man.root.parent / p]
    return next((c for c in cands if (c / "saved_model.pb").is_file()), None)


def _baseline_cases(man: mf.Manifest, example_dir: Path | None, common: dict) -> list[dict]:
    out = []
    keras_file = example_dir / "model.keras" if example_dir else None
    sm = _saved_model_dir(man, example_dir)
    ref_parity = {"status": "reference", "note": "the Keras outputs are the parity reference"}
    for runner, fmt, label in BASELINES:
        path = keras_file if fmt == "keras" else sm
        err = None
        if path is None or not path.exists():
            err = ("model.keras not found next to the exports" if fmt == "keras"
                   else "source SavedModel not found (manifest source path)")
        out.append(_case(common, "baseline", runner, fmt, "fp32", None, path,
                         _tree_size(path) if path else None, label=label, error=err, parity=ref_parity))
    return out


def _artifact_cases(man: mf.Manifest, art: mf.Artifact, common: dict, parity: ParityIndex,
                    mtime: float) -> list[dict]:
    err, path = None, None
    try:
        path = art.verify(man.root)
    except EdgekitError as exc:
        err = str(exc)
        try:
            path = art.resolve(man.root)
        except EdgekitError:
            path = None
    out = []
    for backend in (TFJS_BACKENDS if art.format == "tfjs" else (None,)):
        par = parity.lookup(common["example"], art.format, art.precision, backend, mtime)
        tag = f" ({backend})" if backend else ""
        note = COREML_NOTE if art.format == "coreml" else ""
        out.append(_case(common, "adapter", "adapter", art.format, art.precision, backend, path,
                         int(art.size_bytes), label=f"edgekit {art.format} adapter{tag}", note=note,
                         error=err, parity=par))
        out[-1].update(convert_s=art.raw.get("seconds"), artifact_path=art.path, tuning=art.raw.get("tuning"))
        if art.format in RAW_FORMATS:
            out.append(_case(common, "raw", "raw", art.format, art.precision, backend, path, int(art.size_bytes),
                             label=f"raw {art.format} call{tag}", note=RAW_NOTE[art.format], error=err,
                             parity={**par, "note": "same file as the adapter row"}))
            out[-1]["convert_s"] = art.raw.get("seconds")
    return out

"""What a user would pick instead of edgekit: Keras 3's own exports and the raw converters, defaults.

``edgekit bench --compare-exports`` converts each example's ``model.keras`` / SavedModel four more
ways, in one child process (TensorFlow stays out of the bench process), timing each conversion:

- ``keras.export.litert``: ``model.export(path, format="litert")`` (Keras 3's own LiteRT export);
- ``keras.export.onnx``: ``model.export(path, format="onnx")``;
- ``tflite.converter``: ``tf.lite.TFLiteConverter.from_saved_model(sm).convert()``, default settings;
- ``tf2onnx``: ``python -m tf2onnx.convert --saved-model SM`` with its default opset.

Each file becomes a ``kind: "foreign"`` case timed with the raw runtime call (the fair match for
edgekit's own raw row), carrying ``convert_s`` and its size; a conversion that fails becomes a
row with its error. ``python -m edgekit.bench.baselines MODEL.keras SAVED_MODEL OUT_DIR RUNNERS`` is the
child (``RUNNERS`` a comma-separated subset); it prints one JSON line ``{runner: {"path", "convert_s", "error"}}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgekit.core.text import tail

#: runner -> (format, file name, what)
FOREIGN = {
    "keras.export.litert": ("tflite", "keras_litert.tflite", 'Keras model.export(format="litert")'),
    "keras.export.onnx": ("onnx", "keras_onnx.onnx", 'Keras model.export(format="onnx")'),
    "tflite.converter": ("tflite", "tflite_default.tflite", "tf.lite.TFLiteConverter.from_saved_model, defaults"),
    "tf2onnx": ("onnx", "tf2onnx_default.onnx", "python -m tf2onnx.convert --saved-model, defaults"),
}
TIMEOUT_S = 900


def _convert_all(keras_file: str | None, saved_model: str | None, out: Path, only: list[str]) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, dict] = {}

    def timed(runner: str, fn) -> None:
        if runner not in only:
            return
        path = out / FOREIGN[runner][1]
        t0 = time.perf_counter()
        try:
            fn(path)
            if not path.exists():
                raise FileNotFoundError(f"the converter wrote no {path.name}")
            res[runner] = {"path": str(path), "convert_s": time.perf_counter() - t0, "error": None}
        except Exception as exc:  # noqa: BLE001 - a failing converter is that row's error, not the run's
            res[runner] = {"path": None, "convert_s": time.perf_counter() - t0,
                           "error": f"{type(exc).__name__}: {exc}"[:500].replace("\n", " ")}

    model = None
    if keras_file and any(r.startswith("keras.") for r in only):
        import keras

        model = keras.models.load_model(keras_file, compile=False, safe_mode=True)
    for fmt in ("litert", "onnx"):
        runner = f"keras.export.{fmt}"
        if model is None:
            res[runner] = {"path": None, "convert_s": None, "error": "no model.keras next to the exports"}
        else:
            timed(runner, lambda p, f=fmt: model.export(str(p), format=f, verbose=False))
    if saved_model:
        def tflite(p: Path) -> None:
            p.write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())

        def tf2onnx(p: Path) -> None:
            r = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved_model,
                                "--output", str(p)], capture_output=True, text=True, timeout=TIMEOUT_S)
            if r.returncode != 0:
                raise RuntimeError(f"tf2onnx exit {r.returncode}: {tail(r.stderr, 3)}")

        timed("tflite.converter", tflite)
        timed("tf2onnx", tf2onnx)
    else:
        for runner in ("tflite.converter", "tf2onnx"):
            res[runner] = {"path": None, "convert_s": None, "error": "source SavedModel not found"}
    return res


def convert(keras_file: Path | None, saved_model: Path | None, out: Path, env: dict,
            only: list[str] | None = None) -> dict:
    """Run the conversions (``only`` these runners, default None: all four) in a child process;
    returns ``{runner: {"path", "convert_s", "error"}}``."""
    only = list(only or FOREIGN)
    cmd = [sys.executable, "-m", "edgekit.bench.baselines", str(keras_file or "-"), str(saved_model or "-"), str(out),
           ",".join(only)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
        reply = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
    except (subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        reply, r = None, None
        why = f"{type(exc).__name__}: {exc}"
    else:
        why = f"exit {r.returncode}: {tail(r.stderr, 3)}"
    if not isinstance(reply, dict):
        return {k: {"path": None, "convert_s": None, "error": f"conversion process failed ({why})"} for k in only}
    return {k: v for k, v in reply.items() if k in only}


def cases_for(example_cases: list[dict], work: Path, env: dict, log, formats: list[str] | None = None) -> list[dict]:
    """The foreign cases of one example (``example_cases``: its planned cases; ``formats``: only the
    conversions to these formats, default None: tflite and onnx)."""
    from edgekit.bench.plan import _case, _tree_size

    first = example_cases[0]
    src = first.get("sources") or {}
    out = work / f"foreign-{abs(hash(first['example']))}"
    log(f"converting {first['example']} with Keras' own exports and the raw converters (defaults)")
    t0 = time.perf_counter()
    only = [r for r, (fmt, _, _) in FOREIGN.items() if not formats or fmt in formats]
    if not only:
        return []
    got = convert(Path(src["keras"]) if src.get("keras") else None,
                  Path(src["saved_model"]) if src.get("saved_model") else None, out, env, only)
    log(f"  conversions done in {time.perf_counter() - t0:.1f} s")
    common = {k: first.get(k) for k in ("example", "example_dir", "inputs_file", "task", "unsafe", "sources")}
    cases = []
    for runner in only:
        fmt, _, what = FOREIGN[runner]
        g = got.get(runner) or {"error": "not converted"}
        path = Path(g["path"]) if g.get("path") else None
        c = _case(common, "foreign", runner, fmt, "fp32", None, path, _tree_size(path) if path else None,
                  label=what, note=f"{what}; timed with the raw runtime call", error=g.get("error"),
                  parity={"status": "unknown", "note": "not verified by edgekit"})
        c["convert_s"] = g.get("convert_s")
        cases.append(c)
    return cases


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    keras_file, saved_model, out, only = args
    res = _convert_all(None if keras_file == "-" else keras_file, None if saved_model == "-" else saved_model,
                       Path(out), only.split(","))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

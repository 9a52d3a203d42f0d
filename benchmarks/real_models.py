"""Build and export the real models the benchmark is measured on (offline: ``weights=None`` only).

Usage::

    .venv/bin/python benchmarks/real_models.py OUT [--models NAME ...] [--formats tflite,onnx,...]

Each model goes to ``OUT/<name>/`` laid out like a zoo entry (``saved_model/``, ``model.keras``,
``calibration.npz``, ``reference.npz``) with its full export in ``OUT/<name>/exports`` (every
format and precision unless ``--formats``/``--precisions``). Then ``edgekit bench OUT/<name>``.

Models: the realistic test zoo's (``tests/zoo/models.py``: ``mobilenet_v2`` = MobileNetV2 α0.35
96×96, ``rnn_sensor``, ``lstm_text``, ``transformer_block``, ...) plus ``efficientnet_b0_128``
(EfficientNetB0 at 128×128, the issue's second real model).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "zoo"))

import models  # noqa: E402  (tests/zoo/models.py: the zoo registry)


def efficientnet_b0_128(rng):
    """keras.applications.EfficientNetB0 at 128x128, 10 classes, weights=None; pixels 0-255."""
    import keras

    m = keras.applications.EfficientNetB0(input_shape=(128, 128, 3), weights=None, classes=10)
    return m, {m.inputs[0].name: rng.uniform(0, 255, (64, 128, 128, 3))}


models.ZOO.setdefault("efficientnet_b0_128", models.ZooModel(
    "efficientnet_b0_128", efficientnet_b0_128, rows=8, slow=True, about="EfficientNetB0 at 128x128"))
DEFAULT = ("mobilenet_v2", "efficientnet_b0_128", "rnn_sensor", "transformer_block")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--models", nargs="+", default=list(DEFAULT), choices=sorted(models.ZOO))
    ap.add_argument("--formats", default=None, help="comma-separated formats (default: all)")
    ap.add_argument("--precisions", default=None, help="comma-separated precisions (default: all)")
    args = ap.parse_args(argv)
    from edgekit.export.api import export_model

    for name in args.models:
        d = args.out / name
        t0 = time.perf_counter()
        if not (d / "reference.npz").is_file():
            models.build(name, d)
        t1 = time.perf_counter()
        if not (d / "exports" / "manifest.json").is_file():
            export_model(d / "saved_model", out=d / "exports", calibration=d / "calibration.npz",
                         formats=args.formats.split(",") if args.formats else None,
                         precisions=args.precisions.split(",") if args.precisions else None)
        print(f"{name}: built in {t1 - t0:.1f} s, exported in {time.perf_counter() - t1:.1f} s -> {d / 'exports'}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

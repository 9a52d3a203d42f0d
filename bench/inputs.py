"""Benchmark inputs: one small ``.npz`` per manifest with the batch-1 and batch-N feeds (numpy only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.core.errors import InputError

THROUGHPUT_ROWS = 1024
FOREIGN_SEED = 0
REFERENCE_NAME = "reference.npz"


def write_inputs(man, example_dir: Path | None, out: Path, rows: int = THROUGHPUT_ROWS) -> None:
    """Write the benchmark inputs of one manifest: ``x1__<name>`` (1 row) and ``xn__<name>``.

    Rows come from the example's ``reference.npz`` (tiled to ``rows``), else seeded normal noise
    shaped like the manifest's source inputs (a foreign SavedModel).

    Raises:
        InputError: no usable reference and no input description.
    """
    infos = man.source.get("inputs") or (man.artifacts[0].inputs if man.artifacts else [])
    if not infos:
        raise InputError("manifest describes no inputs", got=str(man.path), expected="source.inputs")
    ref = None
    if example_dir is not None and (example_dir / REFERENCE_NAME).is_file():
        try:
            with np.load(example_dir / REFERENCE_NAME, allow_pickle=False) as z:
                ref = {i["name"]: z[i["name"]] for i in infos if i["name"] in z.files}
        except (OSError, ValueError) as exc:
            raise InputError("cannot read reference.npz", got=f"{example_dir}: {exc}") from exc
    rng = np.random.default_rng(FOREIGN_SEED)
    arrays = {}
    for info in infos:
        name, dtype = info["name"], np.dtype(info.get("dtype", "float32"))
        base = ref.get(name) if ref else None
        if base is None or len(base) == 0:
            shape = [rows] + [1 if d is None else int(d) for d in list(info["shape"])[1:]]
            base = rng.standard_normal(shape).astype(dtype)
        reps = -(-rows // len(base))
        xn = np.concatenate([base] * reps)[:rows].astype(dtype, copy=False)
        arrays[f"x1__{name}"] = np.ascontiguousarray(xn[:1])
        arrays[f"xn__{name}"] = np.ascontiguousarray(xn)
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)


def load_inputs(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_inputs`: (batch-1 feeds, batch-N feeds) keyed by input name."""
    with np.load(path, allow_pickle=False) as z:
        x1 = {k[4:]: z[k] for k in z.files if k.startswith("x1__")}
        xn = {k[4:]: z[k] for k in z.files if k.startswith("xn__")}
    return x1, xn

"""Runtime settings chosen per model by measurement (``edgekit bench --tune``), read back by the adapters.

An artifact entry of ``exports/manifest.json`` may carry::

    "tuning": {"options": {"num_threads": 1}  |  {"intra_op_num_threads": 2,
                                                  "graph_optimization_level": "extended"},
               "p50_ms": {candidate: ms}, "chosen": str, "measured": iso8601, "cpus": int,
               "load_avg": [1, 5, 15 min], "by": "edgekit bench --tune"}

:func:`tuned_options` finds the manifest beside (or one level above) a model file, matches the
file to its artifact entry by resolved path, and returns the recorded options; the TFLite and
ONNX adapters apply them to every option the caller left at its default (``None``), so
``edgekit.load(path)`` runs the measured best setting and explicit options still win. Pass
``tuning=False`` to ignore the manifest. A missing or unreadable manifest means no tuning.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST_NAME = "manifest.json"


def _manifests(path: Path):
    for d in (path.parent, path.parent.parent):
        m = d / MANIFEST_NAME
        if m.is_file():
            yield m


def tuning_entry(path: str | Path, fmt: str) -> dict | None:
    """The ``tuning`` entry of the manifest artifact that is ``path`` (of format ``fmt``), or None."""
    p = Path(path)
    try:
        target = p.resolve()
    except OSError:
        return None
    for m in _manifests(p):
        try:
            data = json.loads(m.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        for a in data.get("artifacts", []) if isinstance(data, dict) else []:
            if not isinstance(a, dict) or a.get("format") != fmt or not isinstance(a.get("path"), str):
                continue
            try:
                if (m.parent / a["path"]).resolve() == target:
                    t = a.get("tuning")
                    return t if isinstance(t, dict) and isinstance(t.get("options"), dict) else None
            except OSError:
                continue
    return None


def tuned_options(path: str | Path, fmt: str, allowed: dict) -> dict:
    """The recorded options for ``path`` restricted to the runner's ``allowed`` option names."""
    t = tuning_entry(path, fmt)
    if not t:
        return {}
    return {k: v for k, v in t["options"].items() if k in allowed and k != "tuning"}


def apply(runner) -> dict:
    """Fill the runner's options left at ``None`` from the manifest's tuning; returns what was applied
    (also kept as ``runner.tuning``). Does nothing when ``runner.options["tuning"]`` is False."""
    applied: dict = {}
    if runner.options.get("tuning", True):
        for k, v in tuned_options(runner.path, runner.format, runner.OPTIONS).items():
            if runner.options.get(k) is None:
                runner.options[k] = v
                applied[k] = v
    runner.tuning = applied
    return applied


#: ``graph_optimization_level`` option values -> onnxruntime ``GraphOptimizationLevel`` names.
ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


def ort_level(ort, name: str):
    """The onnxruntime enum for a level name.

    Raises:
        UsageError: unknown level name.
    """
    from edgekit.core.errors import UsageError

    if name not in ORT_LEVELS:
        raise UsageError("unknown graph_optimization_level", got=name, expected=sorted(ORT_LEVELS))
    return getattr(ort.GraphOptimizationLevel, ORT_LEVELS[name])

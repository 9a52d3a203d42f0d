"""Where a variant diverges: per-layer comparison of every exported file with its Keras model.

:func:`explain` runs the golden inputs of an export directory through Keras with every layer's
output exposed (:mod:`edgekit.parity.layer_outputs`) and through each variant with its
intermediates exposed (:meth:`edgekit.runtime.base.Runner.intermediates`: LiteRT with
``experimental_preserve_all_tensors`` and no default delegates, onnxruntime with every node
output made a graph output), matches tensors to layers by name
(:mod:`edgekit.parity.explain_match`) and compares each layer with the variant's tolerance:
``max |variant - keras| <= atol * max(1, peak |keras layer|)`` (the verify policy of
:mod:`edgekit.parity.tolerance`, applied per layer). The first divergent layer is the first
layer past it whose excess is carried on, through the Keras graph, by layers past it up to a
model output (a layer past tolerance that nothing downstream confirms is a partial tensor across
a fusion, shown as ``over?`` but not blamed)::

    report = explain("exports/", formats=["tflite"])
    print(report.table())
    print(report.variants[0].first_divergent)      # LayerDiff(layer="d2", op="TANH", ...)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekit.core.errors import EdgekitError, InputError, Unverifiable, UsageError
from edgekit.core.formats import FORMATS
from edgekit.parity.explain_report import STATUSES, ExplainReport, LayerDiff, VariantExplanation  # noqa: F401


def affine_per_channel(ref: np.ndarray, val: np.ndarray, allowed: float, min_samples: int = 8) -> bool:
    """True when ``val`` equals ``a_c * ref + b_c`` per channel (last axis) within ``allowed``: the
    variant computed the layer up to a per-channel scale and shift, i.e. a BatchNormalization or a
    bias the converter folded into another op. Needs ``min_samples`` values per channel (default 8), and
    every slope ``a_c`` of a varying channel within [0.05, 20]."""
    c = ref.shape[-1] if ref.ndim >= 2 else 1
    x, y = ref.reshape(-1, c), val.reshape(-1, c)
    if x.shape[0] < min_samples or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return False
    mx, my = x.mean(axis=0), y.mean(axis=0)
    var = ((x - mx) ** 2).mean(axis=0)
    a = np.where(var > 0, ((x - mx) * (y - my)).mean(axis=0) / np.where(var > 0, var, 1.0), 0.0)
    resid = y - (a * (x - mx) + my)
    # a folded BatchNormalization scales by gamma / sqrt(var): a real slope; a clipped (saturated) or
    # dead channel fits a near-flat line instead, which is a divergence, not a fold
    slopes = np.abs(a[var > 0])
    if slopes.size and (slopes.min() < 0.05 or slopes.max() > 20.0):
        return False
    # a near-constant channel (a saturated softmax, a small perturbation) fits any line: the fit must
    # explain a spread at least half the error it explains away, in every channel past tolerance
    err = np.abs(y - x).max(axis=0)
    flat = (err > allowed) & (np.sqrt(var) < 0.5 * err)
    if np.any(flat & (np.abs(a - 1.0) > 0.02)):  # a pure shift (slope 1: a folded bias) needs no spread
        return False
    return bool(np.max(np.abs(resid)) <= allowed)


def _diff(k, got: np.ndarray, perm, tol, rows) -> tuple[float, float, float, bool]:
    """``(max abs err, max rel err, allowed, over)`` of one layer under ``tol`` (NaN where Keras has
    NaN is equal; a NaN or Inf the variant adds is an infinite error)."""
    ref = k.value.astype(np.float64)
    val = (got.transpose(perm) if perm else got).astype(np.float64)
    if rows is not None:
        ref, val = ref[rows], val[rows]
    if not ref.size:
        return 0.0, 0.0, 0.0, False
    peak = float(np.max(np.abs(np.nan_to_num(ref, nan=0.0, posinf=0.0, neginf=0.0))))
    err = np.where(np.isnan(ref) & np.isnan(val), 0.0, np.abs(val - ref))
    err = np.where(np.isnan(err), np.inf, err)
    allowed = tol.atol * (max(1.0, peak) if tol.atol_scale == "peak" else 1.0)
    over = bool(np.max(err - tol.rtol * np.abs(np.nan_to_num(ref))) > allowed)
    max_abs = float(np.max(err))
    rel = max_abs / peak if peak else (0.0 if max_abs == 0 else float("inf"))
    if over and not getattr(k, "output", None) and affine_per_channel(ref, val, allowed):  # never at an output
        return max_abs, rel, allowed, None  # type: ignore[return-value]  # "over, but affine": see compare_layers
    return max_abs, rel, allowed, over


def compare_layers(keras, inter, model_name: str, tol, rows: np.ndarray | None = None) -> list[LayerDiff]:
    """Per Keras layer, the variant's error at the tensor matched to it, judged against ``tol``.

    Args:
        keras: :class:`~edgekit.parity.layer_outputs.KerasLayers`.
        inter: the variant's :class:`~edgekit.runtime.base.Intermediates`.
        model_name: the Keras model's name.
        tol: the variant's :class:`~edgekit.parity.tolerance.Tolerance`.
        rows: golden rows to compare (default None: all).
    """
    from edgekit.parity.explain_match import layouts, match_layers

    out = []
    for k, m in zip(keras.layers, match_layers(keras.layers, inter, inter.producers, model_name,
                                                             inter.outputs), strict=True):
        if m.tensor is None:
            out.append(LayerDiff(k.name, k.kind, None, None, None, None, None,
                                 "fused" if m.fused_into else "unmatched", m.why))
            continue
        got = inter[m.tensor]
        max_abs, rel, allowed, over = min((_diff(k, got, perm, tol, rows) for perm in layouts(k.value, got)),
                                          key=lambda r: r[0])
        if over is None:
            out.append(LayerDiff(k.name, k.kind, m.tensor, m.op, max_abs, rel, allowed, "over?",
                                 "equal to Keras up to a per-channel scale and shift: a BatchNormalization or "
                                 "bias folded into another op?"))
            continue
        out.append(LayerDiff(k.name, k.kind, m.tensor, m.op, max_abs, rel, allowed, "over" if over else "ok"))
    return _confirm(keras.layers, out)


def _confirm(keras_layers, out: list[LayerDiff]) -> list[LayerDiff]:
    """Keep ``over`` only where the excess is carried on to a model output: through the Keras graph,
    a path of layers past tolerance (layers not compared are passed through) reaching an output layer
    past it. Elsewhere it becomes ``over?`` (a partial tensor across a fusion, e.g. a convolution whose
    BatchNormalization the converter folded into a later op). Without a compared output layer, any
    later layer past tolerance confirms."""
    index = {k.name: i for i, k in enumerate(keras_layers)}
    consumers: dict[str, list[str]] = {k.name: [] for k in keras_layers}
    for k in keras_layers:
        for src in getattr(k, "inbound", ()):
            if src in consumers:
                consumers[src].append(k.name)
    outputs = [k.name for k in keras_layers if getattr(k, "output", None)]
    compared_out = [n for n in outputs if out[index[n]].max_abs_err is not None]
    carried: dict[str, bool] = {}
    for k in reversed(keras_layers):
        d = out[index[k.name]]
        downstream = any(carried.get(c, False) for c in consumers[k.name])
        if d.max_abs_err is None:      # not compared: passes on what its consumers say
            carried[k.name] = downstream
        else:
            carried[k.name] = d.status == "over" and (k.name in outputs or downstream)
    for i, d in enumerate(out):
        if d.status != "over":
            continue
        ok = carried[d.layer] if compared_out else \
            (i == len(out) - 1 or any(x.status == "over" for x in out[i + 1:]))
        if not ok:
            out[i] = LayerDiff(d.layer, d.kind, d.tensor, d.op, d.max_abs_err, d.max_rel_err, d.allowed, "over?",
                               "not carried on to the output: a partial tensor across a fusion?")
    return out


def explain_variant(target, art, path: Path, keras, model_name: str, overrides=None,
                    backend: str | None = None) -> VariantExplanation:
    """Explain one exported file of ``target`` (a :class:`~edgekit.parity.targets.Target`) against
    ``keras`` (its :class:`~edgekit.parity.layer_outputs.KerasLayers` on the same golden inputs)."""
    from edgekit.parity.targets import calibrated_rows
    from edgekit.parity.tolerance import tolerances_for
    from edgekit.parity.verify import _feed, _map_names, _runner_options
    from edgekit.runtime.registry import open_model

    t0 = time.perf_counter()
    v = VariantExplanation(art.format, art.precision, art.path)
    ref = target.reference
    try:
        if art.format == "savedmodel":
            import edgekit.parity.reference  # noqa: F401  (registers the savedmodel runner)
            from edgekit.parity.verify import SAVEDMODEL_TOLERANCE

            tol = SAVEDMODEL_TOLERANCE[""]
        else:
            tol = tolerances_for(art.format, art.precision, list(ref.outputs), overrides)[""]
        with open_model(path, format=art.format, **_runner_options(art.format, backend)) as runner:
            v.runtime = runner.runtime_name
            if not runner.supports_intermediates:
                v.status, v.note = "unsupported", f"{runner.runtime_name} cannot expose intermediate tensors"
                return v
            in_map = _map_names([i.name for i in runner.inputs], list(ref.inputs))
            feeds = {r: ref.inputs[n] for n, r in in_map.items()} if in_map else ref.inputs
            inter = runner.intermediates(_feed(feeds, runner, []))
        rows = calibrated_rows(art, target) if tol.calibrated_range_only else None
        v.rows_compared = int(rows.sum()) if rows is not None else ref.rows
        if v.rows_compared == 0:
            v.status = "insufficient"
            v.note = (f"none of the {ref.rows} golden rows lies inside the int8 input/output range: nothing to "
                      "compare (more or wider golden inputs: export --inputs FILE.npz)")
            return v
        v.layers = compare_layers(keras, inter, model_name, tol, rows)
        if inter.notes:
            v.note = "; ".join(inter.notes)
    except Unverifiable as exc:
        v.status, v.note = "unsupported", str(exc)
    except EdgekitError as exc:
        v.status, v.note = "error", str(exc)
    v.seconds = round(time.perf_counter() - t0, 3)
    return v


NEEDS = ("the Keras model the export came from: source/model.keras in the export dir (written when exporting "
         "a .keras file or an edgekit example), or model.keras beside an example's exports/")


def _keras_path(target) -> Path | None:
    """The target's Keras model (:func:`edgekit.parity.targets.load_target` resolves it: the recorded
    source, else an example's ``model.keras`` beside ``exports/``), if the file is there."""
    path = target.keras_path
    return Path(path) if path is not None and Path(path).is_file() else None


def load_keras_layers(target, unsafe: bool = False, keras: Path | str | None = None):
    """The Keras model behind ``target`` (or ``keras``) and its per-layer outputs on the golden inputs.

    Raises:
        InputError: no Keras model next to the export (what explain needs, in one line).
    """
    from edgekit.parity.keras_model import load_keras
    from edgekit.parity.layer_outputs import layer_outputs

    path = Path(keras) if keras is not None else _keras_path(target)
    if path is None or not Path(path).is_file():
        raise InputError("explain needs the Keras model behind the export",
                         got=str(path if keras is not None else target.manifest.root), expected=NEEDS)
    model = load_keras(Path(path), unsafe=unsafe)
    return model, layer_outputs(model, target.reference.inputs)


def explain(export_dir: Path | str, formats: list[str] | None = None, precisions: list[str] | None = None,
            overrides=None, unsafe: bool = False, keras: Path | str | None = None) -> ExplainReport:
    """Per-layer comparison of every variant in ``export_dir`` with its Keras model.

    Args:
        export_dir: an exports dir, an example dir (its ``exports/``) or an artifacts root (its
            first example; pass an example dir to choose).
        formats: only these formats (default None: every format in the manifest).
        precisions: only these precisions (default None: all).
        overrides: tolerance overrides as for verify (default None).
        unsafe: load a ``.keras`` holding Lambda layers (default False).
        keras: compare with this ``.keras`` model instead of the export's own (default None): e.g.
            the model before a change, to see which layer the change moved.

    Returns:
        An :class:`ExplainReport`; a variant whose runtime cannot expose intermediates has status
        ``unsupported`` and a note, the others are still explained.

    Raises:
        UsageError: an unknown format. InputError: no manifest, or no Keras model next to it.
    """
    from edgekit.parity.targets import find_manifests, load_target

    t0 = time.perf_counter()
    bad = sorted(set(formats or []) - set(FORMATS))
    if bad:
        raise UsageError("unknown format", got=bad, expected=list(FORMATS))
    manifest = find_manifests(Path(export_dir))[0]
    target = load_target(manifest, unsafe=unsafe)
    model, layers = load_keras_layers(target, unsafe, keras)
    report = ExplainReport(str(manifest.parent), keras_layers=len(layers.layers), skipped_layers=layers.skipped)
    arts = list(target.artifacts)
    if target.saved_model is not None and not formats:  # as verify: the exported SavedModel is a row too
        arts.insert(0, target.saved_model)
    for art, path in arts:
        if (formats and art.format not in formats) or (precisions and art.precision not in precisions):
            continue
        backend = "cpu" if art.format == "tfjs" else None
        report.variants.append(explain_variant(target, art, path, layers, model.name, overrides, backend))
    report.seconds = time.perf_counter() - t0
    return report


def annotate_failures(tasks: list, done: list, overrides=None) -> int:
    """verify's hook: for every failed row, say where the variant first diverges.

    ``tasks`` and ``done`` are verify's: ``(target index, target, artifact, path, backend, metric)``
    and ``(row, outputs)`` per task. A failed row of a format whose runtime exposes intermediates,
    whose target has its Keras model, gets ``"; first divergent layer: d2 (Dense, op TANH)"`` in its
    message and ``first_divergent_layer`` (``{"layer", "kind", "op"}``). Nothing here fails a
    verify: a row explain cannot explain keeps its message. Returns the number of rows annotated.
    """
    import importlib.util

    if importlib.util.find_spec("keras") is None:
        return 0  # a device without Keras: verify's verdicts stand alone
    cache: dict[int, tuple | None] = {}
    count = 0
    for task, (row, _) in zip(tasks, done, strict=True):
        ti, target, art, path, backend = task[:5]
        if row.get("status") != "fail" or art.format not in FORMATS or _keras_path(target) is None:
            continue
        if ti not in cache:
            try:
                cache[ti] = load_keras_layers(target)
            except EdgekitError:
                cache[ti] = None
        if cache[ti] is None:
            continue
        model, layers = cache[ti]
        v = explain_variant(target, art, path, layers, model.name, overrides, backend)
        d = v.first_divergent
        if v.status != "explained" or d is None:
            continue
        hidden = v.hidden_before(d.layer)
        note = f"first divergent layer: {d.layer} ({d.kind}, op {d.op})" + \
            (f" or just before it ({', '.join(hidden)}: fused in this variant or not named)" if hidden else "")
        row["message"] = f"{row['message']}; {note}" if row.get("message") else note
        row["first_divergent_layer"] = {"layer": d.layer, "kind": d.kind, "op": d.op}
        count += 1
    return count

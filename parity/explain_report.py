"""The objects :func:`edgekit.parity.explain.explain` returns: per-layer differences, one
explanation per variant, and the report (``to_dict()``, ``table()``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: a layer's status: compared and within tolerance, past it, past it but no later layer confirms it,
#: fused into a later layer, or not found in the variant.
STATUSES = ("ok", "over", "over?", "fused", "unmatched")


@dataclass(frozen=True)
class LayerDiff:
    """One Keras layer against one variant.

    Attributes:
        layer, kind: the Keras layer's name and class.
        tensor, op: the variant tensor compared and the op that computed it (None if not compared).
        max_abs_err: ``max |variant - keras|`` over the compared rows (None if not compared).
        max_rel_err: ``max_abs_err / max |keras|`` (None if not compared).
        allowed: the tolerance ``atol * max(1, peak |keras|)`` (None if not compared).
        status: one of :data:`STATUSES`.
        note: why it was not compared (``fused into d2``), or "".
    """

    layer: str
    kind: str
    tensor: str | None
    op: str | None
    max_abs_err: float | None
    max_rel_err: float | None
    allowed: float | None
    status: str
    note: str = ""


@dataclass
class VariantExplanation:
    """The per-layer comparison of one exported file.

    Attributes:
        status: ``explained``, ``unsupported`` (the runtime cannot expose intermediates: ``note``
            says why), ``insufficient`` (no golden row to compare: ``note``) or ``error``.
        first_divergent: the first layer past the tolerance that later layers confirm, or None.
    """

    format: str
    precision: str
    path: str
    runtime: str = ""
    status: str = "explained"
    note: str = ""
    layers: list[LayerDiff] = field(default_factory=list)
    rows_compared: int = 0
    seconds: float = 0.0

    @property
    def first_divergent(self) -> LayerDiff | None:
        return next((d for d in self.layers if d.status == "over"), None)

    def headline(self) -> str:
        """``tflite/fp32: first divergent layer: d2 (Dense, op TANH) ...`` or why there is none."""
        name = f"{self.format}/{self.precision}"
        if self.status != "explained":
            return f"{name}: {self.status}: {self.note}"
        d = self.first_divergent
        if d is None:
            compared = sum(1 for x in self.layers if x.max_abs_err is not None)
            inner = next((x for x in self.layers if x.status == "over?" and x.note.startswith("not carried")), None)
            tail = f"; past tolerance inside from {inner.layer} on, not at the output (over?)" if inner else ""
            return f"{name}: no divergent layer ({compared} of {len(self.layers)} layers compared){tail}"
        hidden = self.hidden_before(d.layer)
        where = f" (compared after {', '.join(hidden)}, which this variant fused in or does not name)" \
            if hidden else ""
        return (f"{name}: first divergent layer: {d.layer}{where} ({d.kind}, op {d.op}): max abs err "
                f"{d.max_abs_err:.3g} > allowed {d.allowed:.3g}")

    def hidden_before(self, layer: str) -> list[str]:
        """The layers right before ``layer`` (layer order) that were not compared: fused into a later
        op or not named in the variant. A fault there first shows at ``layer``."""
        names = [x.layer for x in self.layers]
        if layer not in names:
            return []
        out: list[str] = []
        for d in reversed(self.layers[:names.index(layer)]):
            if d.max_abs_err is not None:
                break
            out.insert(0, d.layer)
        return out

    def to_dict(self) -> dict:
        out = asdict(self)
        d = self.first_divergent
        out["first_divergent"] = None if d is None else {"layer": d.layer, "kind": d.kind, "op": d.op}
        return out


@dataclass
class ExplainReport:
    """What :func:`explain` returns: one :class:`VariantExplanation` per variant, in manifest order."""

    source: str
    variants: list[VariantExplanation] = field(default_factory=list)
    keras_layers: int = 0
    skipped_layers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"source": self.source, "keras_layers": self.keras_layers, "skipped_layers": self.skipped_layers,
                "seconds": round(self.seconds, 3), "variants": [v.to_dict() for v in self.variants]}

    def table(self, markdown: bool = False) -> str:
        """Per variant: its headline, then one row per Keras layer (layer, kind, op, errors, status)."""
        from edgekit.core.table import render

        def f(x):
            return "-" if x is None else f"{x:.3g}"

        parts = []
        for v in self.variants:
            parts.append(v.headline())
            if v.status == "explained":
                rows = [(d.layer, d.kind, d.op or "-", f(d.max_abs_err), f(d.max_rel_err), f(d.allowed),
                         f"{d.status} ({d.note})" if d.note else d.status) for d in v.layers]
                parts.append(render(("layer", "kind", "op", "max abs", "rel", "allowed", "status"), rows,
                                    markdown=markdown, right=(3, 4, 5)))
        return "\n\n".join(parts)

"""Graph rewrites (export/legalize.py): each removes its op and computes what the original graph does."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the rewrites work on TensorFlow graphs (edgekit[export])")

from edgekit.export import graph as graph_mod  # noqa: E402
from edgekit.export import legalize as lg  # noqa: E402

RNG = np.random.default_rng(0)


def _frozen(fn, *specs):
    cf = tf.function(fn, input_signature=list(specs)).get_concrete_function()
    frozen, gd = graph_mod.freeze(cf)
    return cf, frozen, gd


def _run_rewritten(rewrite_names, fn, specs, feeds):
    """Freeze ``fn``, apply the named rewrites, run both graphs on ``feeds``; returns
    (ops before, ops after, applied, original outputs, rewritten outputs)."""
    cf, frozen, gd = _frozen(fn, *specs)
    before = {n.op for n in gd.node}
    outs = [t.name for t in frozen.outputs]
    shapes = graph_mod.static_shapes(gd)
    rewrites = tuple(lg.BY_NAME[n] for n in rewrite_names)
    gd, applied = lg.legalize(gd, rewrites, shapes, keep=[o.split(":")[0] for o in outs])
    after = {n.op for n in gd.node}
    ins = {f"in{i}": t.name for i, t in enumerate(frozen.inputs)}
    _, wrapped = graph_mod._wrap(gd, ins, {f"out{i}": o for i, o in enumerate(outs)})
    want = [np.asarray(t) for t in tf.nest.flatten(cf(*[tf.constant(f) for f in feeds]))]
    got = wrapped(*[tf.constant(f) for f in feeds])
    got = [got[f"out{i}"].numpy() for i in range(len(outs))]
    return before, after, applied, want, got


F32 = tf.float32


def test_erfc_becomes_one_minus_erf_and_keeps_gelu_exact():
    x = RNG.normal(0, 3, (64, 8)).astype(np.float32)
    before, after, applied, want, got = _run_rewritten(
        ["erfc->1-erf"], lambda t: 0.5 * t * tf.math.erfc(-t / np.float32(np.sqrt(2))),
        [tf.TensorSpec([None, 8], F32)], [x])
    assert "Erfc" in before and "Erfc" not in after and {"Erf", "Sub"} <= after
    assert applied == [{"name": "erfc->1-erf", "count": 1}]
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=2e-6)


def test_keras_argmax_pattern_becomes_plain_argmax():
    import keras

    x = RNG.normal(size=(64, 7)).astype(np.float32)
    x[0] = [-0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0]  # the signed-zero tie the pattern exists for
    before, after, applied, want, got = _run_rewritten(
        ["argmax-signbit->argmax"], lambda t: keras.ops.argmax(t, axis=-1), [tf.TensorSpec([None, 7], F32)], [x])
    assert {"Bitcast", "BitwiseAnd"} <= before
    assert not {"Bitcast", "BitwiseAnd", "SelectV2"} & after and "ArgMax" in after
    np.testing.assert_array_equal(got[0][1:], want[0][1:])
    assert got[0][0] in (0, 1) and want[0][0] == 1  # the only difference: which of -0.0/+0.0 wins


@pytest.mark.parametrize("name,op,fn", [
    ("softsign->x/(1+|x|)", "Softsign", tf.nn.softsign),
    ("expm1->exp-1", "Expm1", tf.math.expm1),
])
def test_elementwise_rewrites(name, op, fn):
    x = np.concatenate([RNG.normal(0, 4, (60, 5)), np.full((1, 5), 1e-5), np.zeros((1, 5))]).astype(np.float32)
    before, after, applied, want, got = _run_rewritten([name], fn, [tf.TensorSpec([None, 5], F32)], [x])
    assert op in before and op not in after and applied[0]["name"] == name
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-7)


def test_negative_cumsum_axis_made_positive():
    x = RNG.normal(size=(10, 3, 4)).astype(np.float32)
    _, _, applied, want, got = _run_rewritten(
        ["cumsum-axis->positive"], lambda t: tf.cumsum(t, axis=-1), [tf.TensorSpec([None, 3, 4], F32)], [x])
    assert applied == [{"name": "cumsum-axis->positive", "count": 1}]
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("eq,sa,sb", [
    ("bd,de->be", (None, 6), (6, 5)),              # a Dense layer
    ("bi,bj->bij", (None, 4), (None, 3)),           # outer product, no contraction
    ("abc,cde->abde", (None, 8, 16), (16, 2, 8)),   # MultiHeadAttention's query projection
    ("aecd,abcd->acbe", (None, 8, 2, 4), (None, 8, 2, 4)),  # attention scores
    ("acbe,aecd->abcd", (None, 2, 8, 8), (None, 8, 2, 4)),  # attention-weighted values
    ("abcd,cde->abe", (None, 8, 2, 4), (2, 4, 16)),  # output projection
    ("bij,bjk->bik", (None, 3, 4), (None, 4, 2)),
    ("bik,k->bi", (None, 3, 4), (4,)),
    ("bij,bkj->bik", (None, 3, 4), (None, 5, 4)),
])
def test_einsum_lowered_to_matmul_matches(eq, sa, sb):
    n = 5
    a = RNG.normal(size=[n if d is None else d for d in sa]).astype(np.float32)
    b = RNG.normal(size=[n if d is None else d for d in sb]).astype(np.float32)
    before, after, applied, want, got = _run_rewritten(
        ["einsum->matmul"], lambda x, y: tf.einsum(eq, x, y), [tf.TensorSpec(sa, F32), tf.TensorSpec(sb, F32)], [a, b])
    if "Einsum" not in before:
        pytest.skip(f"TensorFlow already lowered {eq} itself")
    assert "Einsum" not in after and applied[0]["name"] == "einsum->matmul"
    np.testing.assert_allclose(got[0], np.einsum(eq, a, b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)


def test_einsum_plan_refuses_what_it_cannot_lower():
    assert lg.einsum_plan("...ij,...jk->...ik", (None, 2, 3), (None, 3, 4)) is None  # ellipsis
    assert lg.einsum_plan("ii,ij->j", (3, 3), (3, 4)) is None                        # a diagonal
    assert lg.einsum_plan("bi,bj->bij", (None, 4), (None, None)) is None             # two unknown dims
    assert lg.einsum_plan("bd,de->be", (None, None), (None, 5)) is None              # unknown contraction
    plan = lg.einsum_plan("bd,de->be", (None, 6), (6, 5))
    assert plan["matmul"] == "MatMul" and plan["perm_a"] is None and plan["shape_out"] is None


def test_rewrites_are_per_format():
    names = {f: {r.name for r in lg.for_format(f)} for f in ("tflite", "coreml", "tfjs", "onnx")}
    # TFLite fuses Keras' exact GELU (erfc) into its GELU builtin but has no Erf builtin
    assert "erfc->1-erf" not in names["tflite"] and "erfc->1-erf" in names["onnx"]
    assert "cumsum-axis->positive" in names["tfjs"] and "cumsum-axis->positive" not in names["onnx"]
    assert all("argmax-signbit->argmax" in v for v in names.values())
    for r in lg.REWRITES:
        assert r.doc and r.ops and r.formats


def test_untouched_graph_reports_no_rewrite():
    cf, frozen, gd = _frozen(lambda t: tf.nn.relu(t) * 2.0, tf.TensorSpec([None, 3], F32))
    assert lg.applicable(gd, lg.REWRITES) == []

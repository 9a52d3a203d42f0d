"""TF.js graph fix-ups (export/tfjs.py): fused activations TF.js cannot run are split into plain ops
that compute the activation's definition, every op TF.js 4.22's op list has."""

from __future__ import annotations

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the fix-ups edit TensorFlow graphs (edgekit[export])")
pytest.importorskip("tensorflowjs", reason="tensorflowjs (edgekit[export]) is not installed")

from edgekit.export import tfjs as tfjs_export  # noqa: E402
from edgekit.export.graphedit import GraphEditor  # noqa: E402
from edgekit.export.opsupport import tfjs_ops  # noqa: E402

X = np.linspace(-6, 6, 121, dtype=np.float32).reshape(11, 11)
ERF = np.vectorize(math.erf)
DEFINITIONS = {
    "Tanh": np.tanh,
    "_FusedHardSwish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "_MklSwish": lambda x: x / (1 + np.exp(-x)),
    "GeluExact": lambda x: 0.5 * x * (1 + ERF(x / np.sqrt(2))),
    "GeluApproximate": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
}


@pytest.mark.parametrize("act", sorted(DEFINITIONS))
def test_split_activation_computes_its_definition(act):
    g0 = tf.Graph()
    with g0.as_default():
        tf.compat.v1.placeholder(tf.float32, [None, 11], name="x")
    gd = g0.as_graph_def()
    g = GraphEditor(gd)
    tfjs_export._expand_activation(g, act, "x", "y", _like())
    assert {n.op for n in gd.node} - {"Placeholder", "Const"} <= tfjs_ops()
    out = tf.Graph()
    with out.as_default():
        tf.graph_util.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=out) as sess:
            got = sess.run("y:0", {"x:0": X})
    np.testing.assert_allclose(got, DEFINITIONS[act](X.astype(np.float64)), rtol=1e-5, atol=1e-5)


def _like():
    from tensorflow.core.framework import node_def_pb2

    n = node_def_pb2.NodeDef(name="like", op="Identity")
    n.attr["T"].type = tf.float32.as_datatype_enum
    return n


def test_unfuse_splits_only_what_tfjs_cannot_run_fused():
    from tensorflow.core.framework import node_def_pb2

    gd = tf.compat.v1.GraphDef()
    for name, acts in (("keep", [b"BiasAdd", b"Relu6"]), ("split", [b"BiasAdd", b"_FusedHardSwish"])):
        n = node_def_pb2.NodeDef(name=name, op="_FusedConv2D", input=["x", "w", "b"])
        n.attr["T"].type = tf.float32.as_datatype_enum
        n.attr["fused_ops"].list.s.extend(acts)
        gd.node.append(n)
    consumer = gd.node.add(name="use", op="Identity", input=["split"])
    consumer.attr["T"].type = tf.float32.as_datatype_enum
    assert tfjs_export._unfuse_activations(gd) == ["_FusedHardSwish"]
    nodes = {n.name: n for n in gd.node}
    assert [s.decode() for s in nodes["keep"].attr["fused_ops"].list.s] == ["BiasAdd", "Relu6"]
    assert nodes["split"].op == "Mul"  # the consumer still reads "split": now the activation's last op
    conv = next(n for n in gd.node if n.op == "_FusedConv2D" and n.name != "keep")
    assert [s.decode() for s in conv.attr["fused_ops"].list.s] == ["BiasAdd"]


def test_unknown_fused_activation_is_refused_by_name():
    with pytest.raises(ValueError, match="activation 'Mish'"):
        tfjs_export._expand_activation(GraphEditor(tf.compat.v1.GraphDef()), "Mish", "x", "y", _like())

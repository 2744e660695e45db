"""Cross-entropy on classifier heads shaped [N, C, 1, 1] (conv heads) with a Softmax over axis 1."""

from __future__ import annotations

import numpy as np

from rctc.ir import Graph
from rctc.options import CompileOptions
from rctc.passes import add_loss, canonicalize, mark_trainable


def test_conv_head_softmax_axis1_is_fused_and_flattened() -> None:
    g = Graph()
    x = g.add_input("x", (2, 3, 1, 1), np.float32)
    w = g.add_value("w", (5, 3, 1, 1), np.float32, "param", np.ones((5, 3, 1, 1), np.float32))
    c = g.add_node("Conv", [x, w], [("z", (2, 5, 1, 1), np.float32)])
    s = g.add_node("Softmax", [c.outputs[0]], [("probs", (2, 5, 1, 1), np.float32)], {"axis": 1})
    g.outputs = [s.outputs[0]]
    g.meta.update(model_inputs=["x"], model_outputs=["probs"])
    for p in (canonicalize, mark_trainable, add_loss):
        p.run(g, CompileOptions())
    g.verify()
    assert g.meta["output_activation"] == "softmax"
    loss = g.value("loss").producer
    assert loss.inputs[0].shape == (2, 5) and loss.inputs[0].producer.op_type == "Reshape"
    assert loss.inputs[0].producer.inputs[0].name == "z"

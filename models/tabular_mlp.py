"""tabular_mlp: x [N,30] (standardised tabular features, e.g. the bundled breast_cancer data) ->
fc1(30->32) Relu -> fc2(32->16) Relu -> fc3(16->2) -> logits [N,2]."""

from __future__ import annotations

import onnx
from onnx import TensorProto

from ._common import GraphBuilder


def build_tabular_mlp(seed: int = 0) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    h = g.relu(g.linear("fc1", "x", 30, 32), "relu1")
    h = g.relu(g.linear("fc2", h, 32, 16), "relu2")
    g.linear("fc3", h, 16, 2, output="logits")
    return g.finish("tabular_mlp", ("x", TensorProto.FLOAT, [30]), ("logits", [2]))

"""mlp: x [N,64] -> fc1(64->64) Relu -> fc2(64->32) Relu -> fc3(32->10) -> logits [N,10]."""

from __future__ import annotations

import onnx
from onnx import TensorProto

from ._common import GraphBuilder


def build_mlp(seed: int = 0) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    h = g.relu(g.linear("fc1", "x", 64, 64), "relu1")
    h = g.relu(g.linear("fc2", h, 64, 32), "relu2")
    g.linear("fc3", h, 32, 10, output="logits")
    return g.finish("mlp", ("x", TensorProto.FLOAT, [64]), ("logits", [10]))

"""lenet: x [N,1,8,8] -> conv1(1->8) Relu MaxPool -> conv2(8->16) Relu MaxPool -> Flatten
-> fc1(64->32) Relu -> fc2(32->10) -> logits [N,10]. Convs are 3x3, pad 1, with bias."""

from __future__ import annotations

import onnx
from onnx import TensorProto

from ._common import GraphBuilder


def build_lenet(seed: int = 0) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    h = g.relu(g.conv("conv1", "x", 1, 8, 3), "relu1")
    h = g.op("MaxPool", [h], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    h = g.relu(g.conv("conv2", h, 8, 16, 3), "relu2")
    h = g.op("MaxPool", [h], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    h = g.op("Flatten", [h], "flatten", axis=1)
    h = g.relu(g.linear("fc1", h, 64, 32), "relu3")
    g.linear("fc2", h, 32, 10, output="logits")
    return g.finish("lenet", ("x", TensorProto.FLOAT, [1, 8, 8]), ("logits", [10]))

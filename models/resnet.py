"""CIFAR ResNets (He et al. 2016): resnet8 (1 block per stage) and resnet20 (3 per stage).

x [N,3,32,32] -> conv1 3x3 16 -> bn1 -> Relu -> layer1 (16, s1) -> layer2 (32, s2)
-> layer3 (64, s2) -> GlobalAveragePool -> Flatten -> fc (64->10) -> logits [N,10].
BasicBlock ``layerS.B``: conv1 3x3(stride) bn1 Relu conv2 3x3 bn2, + shortcut, Relu. The
shortcut is identity, or ``downsample.0`` (1x1 conv, stride) + ``downsample.1`` (BN) when the
shape changes. All convs are bias-free.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from ._common import GraphBuilder

STAGES = ((16, 1), (32, 2), (64, 2))


def _basic_block(g: GraphBuilder, p: str, x: str, cin: int, cout: int, stride: int) -> str:
    h = g.relu(g.conv_bn(f"{p}.conv1", f"{p}.bn1", x, cin, cout, 3, stride=stride), f"{p}.relu1")
    h = g.conv_bn(f"{p}.conv2", f"{p}.bn2", h, cout, cout, 3)
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = g.conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", x, cin, cout, 1, stride=stride)
    return g.relu(g.op("Add", [h, shortcut], f"{p}.add"), f"{p}.relu2")


def build_resnet(blocks_per_stage: int, seed: int = 0, name: str | None = None) -> onnx.ModelProto:
    """CIFAR ResNet with depth 6 * blocks_per_stage + 2."""
    g = GraphBuilder(seed)
    h = g.relu(g.conv_bn("conv1", "bn1", "x", 3, 16, 3), "relu")
    cin = 16
    for s, (cout, stride) in enumerate(STAGES, start=1):
        for b in range(blocks_per_stage):
            h = _basic_block(g, f"layer{s}.{b}", h, cin, cout, stride if b == 0 else 1)
            cin = cout
    h = g.op("GlobalAveragePool", [h], "avgpool")
    h = g.op("Flatten", [h], "flatten", axis=1)
    g.linear("fc", h, 64, 10, output="logits")
    graph_name = name or f"resnet{6 * blocks_per_stage + 2}"
    return g.finish(graph_name, ("x", TensorProto.FLOAT, [3, 32, 32]), ("logits", [10]))


def build_resnet8(seed: int = 0) -> onnx.ModelProto:
    return build_resnet(1, seed)


def build_resnet20(seed: int = 0) -> onnx.ModelProto:
    return build_resnet(3, seed)

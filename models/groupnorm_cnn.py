"""groupnorm_cnn: x [N,3,16,16] -> conv1(3->16) -> GroupNorm(4) Relu -> Pad(reflect 1) conv2(16->32,
stride 2, no pad) -> GroupNorm(8) Relu -> Resize x2 (bilinear, half_pixel) -> conv3(32->16, stride
2) -> InstanceNorm(affine) Relu -> GlobalAveragePool -> Flatten -> fc(16->10) -> logits [N,10].

GroupNorm is written as PyTorch's exporter writes it: Reshape (N, G, -1) -> InstanceNormalization
with constant ones / zeros (not parameters) -> Reshape back -> Mul(``gn.weight`` (C,1,1)) ->
Add(``gn.bias`` (C,1,1)). Convs are 3x3 with bias."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from ._common import GraphBuilder


def _group_norm(g: GraphBuilder, prefix: str, x: str, channels: int, groups: int, hw: int) -> str:
    grouped = g.op("Reshape", [x, g.ints(f"{prefix}.grouped_shape", [0, groups, -1])], f"{prefix}.reshape")
    ones = f"{prefix}.instance_scale"
    zeros = f"{prefix}.instance_bias"
    for name, fill in ((ones, 1.0), (zeros, 0.0)):  # Constant nodes, as the exporter writes them
        g.nodes.append(helper.make_node("Constant", [], [g._claim(name)], name=f"{name}.const",
                                        value=helper.make_tensor(name, TensorProto.FLOAT, [groups], [fill] * groups)))
    h = g.op("InstanceNormalization", [grouped, ones, zeros], f"{prefix}.instance_norm", epsilon=1e-5)
    h = g.op("Reshape", [h, g.ints(f"{prefix}.shape", [0, channels, hw, hw])], f"{prefix}.reshape_back")
    h = g.op("Mul", [h, g.full(f"{prefix}.weight", (channels, 1, 1), 1.0)], f"{prefix}.mul")
    return g.op("Add", [h, g.full(f"{prefix}.bias", (channels, 1, 1), 0.0)], f"{prefix}.add")


def build_groupnorm_cnn(seed: int = 0) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    h = g.relu(_group_norm(g, "gn1", g.conv("conv1", "x", 3, 16, 3), 16, 4, 16), "relu1")
    h = g.op("Pad", [h, g.ints("pad2.pads", [0, 0, 1, 1, 0, 0, 1, 1])], "pad2", mode="reflect")
    h = g.relu(_group_norm(g, "gn2", g.conv("conv2", h, 16, 32, 3, stride=2, pad=0), 32, 8, 8), "relu2")
    h = g.op("Resize", [h, "", g.tensor("up.scales", np.array([1, 1, 2, 2], np.float32))], "up", mode="linear",
             coordinate_transformation_mode="half_pixel")
    h = g.conv("conv3", h, 32, 16, 3, stride=2)
    h = g.op("InstanceNormalization", [h, g.full("in3.weight", (16,), 1.0), g.full("in3.bias", (16,), 0.0)], "in3",
             epsilon=1e-5)
    h = g.relu(h, "relu3")
    h = g.op("GlobalAveragePool", [h], "gap")
    h = g.op("Flatten", [h], "flatten", axis=1)
    g.linear("fc", h, 16, 10, output="logits")
    return g.finish("groupnorm_cnn", ("x", TensorProto.FLOAT, [3, 16, 16]), ("logits", [10]))

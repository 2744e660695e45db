"""mobilenet: a small MobileNet-style network on x [N,3,32,32] -> logits [N,10].

conv1 (3x3, 3->16, s1, no bias) bn1 ReLU6, then depthwise-separable blocks ``layers.i``:
dw (3x3, group=C, no bias) bn1 ReLU6, pw (1x1, no bias) bn2 ReLU6, with (in->out, stride)
given by BLOCKS; GlobalAveragePool -> Flatten -> fc (128->10). ReLU6 is Clip with min/max
as inputs (the shared scalar initializers ``relu6.min`` = 0 and ``relu6.max`` = 6).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from ._common import GraphBuilder

BLOCKS = ((16, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2))


def _relu6(g: GraphBuilder, x: str, name: str) -> str:
    return g.op("Clip", [x, "relu6.min", "relu6.max"], name)


def build_mobilenet(seed: int = 0) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    g.scalar("relu6.min", 0.0)
    g.scalar("relu6.max", 6.0)
    h = _relu6(g, g.conv_bn("conv1", "bn1", "x", 3, 16, 3), "relu1")
    for i, (cin, cout, stride) in enumerate(BLOCKS):
        p = f"layers.{i}"
        h = _relu6(g, g.conv_bn(f"{p}.dw", f"{p}.bn1", h, cin, cin, 3, stride=stride, group=cin),
                   f"{p}.relu1")
        h = _relu6(g, g.conv_bn(f"{p}.pw", f"{p}.bn2", h, cin, cout, 1), f"{p}.relu2")
    h = g.op("GlobalAveragePool", [h], "avgpool")
    h = g.op("Flatten", [h], "flatten", axis=1)
    g.linear("fc", h, BLOCKS[-1][1], 10, output="logits")
    return g.finish("mobilenet", ("x", TensorProto.FLOAT, [3, 32, 32]), ("logits", [10]))

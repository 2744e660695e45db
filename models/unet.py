"""unet: a small U-Net classifier. x [N,1,16,16] -> enc1 conv(1->8) Relu (skip1, 16x16) -> MaxPool
-> enc2 conv(8->16) Relu (skip2, 8x8) -> MaxPool -> mid conv(16->16) Relu (4x4) -> up1
ConvTranspose(16->16, 2x2, stride 2) -> Concat(skip2) -> dec1 conv(32->16) Relu -> Resize x2
(nearest, asymmetric / floor: PyTorch's nn.Upsample) -> Concat(skip1) -> dec2 conv(24->8) Relu ->
GlobalAveragePool -> Flatten -> fc(8->10) -> logits [N,10]. Convs are 3x3, pad 1, with bias."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from ._common import GraphBuilder


def build_unet(seed: int = 0) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    s1 = g.relu(g.conv("enc1", "x", 1, 8, 3), "enc1.relu")
    h = g.op("MaxPool", [s1], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    s2 = g.relu(g.conv("enc2", h, 8, 16, 3), "enc2.relu")
    h = g.op("MaxPool", [s2], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    h = g.relu(g.conv("mid", h, 16, 16, 3), "mid.relu")
    fan_in = 16 * 2 * 2  # PyTorch's ConvTranspose2d init: fan_in from weight.shape[1] * prod(kernel)
    w, b = g.uniform("up1.weight", (16, 16, 2, 2), fan_in), g.uniform("up1.bias", (16,), fan_in)
    h = g.op("ConvTranspose", [h, w, b], "up1", kernel_shape=[2, 2], strides=[2, 2])
    h = g.op("Concat", [h, s2], "cat1", axis=1)
    h = g.relu(g.conv("dec1", h, 32, 16, 3), "dec1.relu")
    scales = g.tensor("up2.scales", np.array([1, 1, 2, 2], np.float32))
    h = g.op("Resize", [h, "", scales], "up2", mode="nearest", coordinate_transformation_mode="asymmetric",
             nearest_mode="floor")
    h = g.op("Concat", [h, s1], "cat2", axis=1)
    h = g.relu(g.conv("dec2", h, 24, 8, 3), "dec2.relu")
    h = g.op("GlobalAveragePool", [h], "gap")
    h = g.op("Flatten", [h], "flatten", axis=1)
    g.linear("fc", h, 8, 10, output="logits")
    return g.finish("unet", ("x", TensorProto.FLOAT, [1, 16, 16]), ("logits", [10]))

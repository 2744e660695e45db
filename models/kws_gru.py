"""kws_gru: keyword spotting on MFCC frames: x [N,20,10] (20 frames of 10 coefficients, batch first)
-> Transpose to [20,N,10] -> GRU(10->32, linear_before_reset=1), as PyTorch's exporter writes
nn.GRU(batch_first=True) -> last hidden state Y_h [1,N,32] -> Squeeze -> fc(32->12) -> logits [N,12] (12 keywords, as in
the Speech Commands task). The GRU's weights are ONNX-layout initializers ``gru.W`` [1,96,10],
``gru.R`` [1,96,32], ``gru.B`` [1,192] (gates z, r, h), drawn like PyTorch's U(-1/sqrt(H), 1/sqrt(H))."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from ._common import GraphBuilder

FRAMES, COEFFS, HIDDEN, KEYWORDS = 20, 10, 32, 12


def build_kws_gru(seed: int = 0) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    w = g.uniform("gru.W", (1, 3 * HIDDEN, COEFFS), HIDDEN)
    r = g.uniform("gru.R", (1, 3 * HIDDEN, HIDDEN), HIDDEN)
    b = g.uniform("gru.B", (1, 6 * HIDDEN), HIDDEN)
    seq = g.op("Transpose", ["x"], "x_seq", perm=[1, 0, 2])
    g.nodes.append(helper.make_node("GRU", [seq, w, r, b], ["", g._claim("gru.h")], name=g._claim("gru"),
                                    hidden_size=HIDDEN, linear_before_reset=1))
    h = g.op("Squeeze", ["gru.h", g.ints("squeeze.axes", [0])], "squeeze")
    g.linear("fc", h, HIDDEN, KEYWORDS, output="logits")
    return g.finish("kws_gru", ("x", TensorProto.FLOAT, [FRAMES, COEFFS]), ("logits", [KEYWORDS]))

"""insert_fake_quant (qat mode): the QAT baseline's fake quantisation of the forward pass.

Needs: a canonical forward graph with trainable flags (runs before add_loss / build_backward).
Leaves: every Conv / Gemm / MatMul reads ``FakeQuant``-ed operands: parameters at ``--bits``
and activations at ``--act-bits`` (per-tensor power-of-two scale from max |x|, nearest
rounding). Parameters stay FP32 master copies that receive the updates; the gradient of
FakeQuant is the straight-through estimator (identity), as in PyTorch's eager QAT.
"""

from __future__ import annotations

from rctc.ir import Graph, Value
from rctc.ops import FAKE_QUANT_PRODUCTS as GEMM_OPS
from rctc.options import CompileOptions


def run(g: Graph, options: CompileOptions) -> None:
    memo: dict[str, Value] = {}
    for node in list(g.nodes):
        if node.op_type not in GEMM_OPS:
            continue
        for i in (0, 1):
            v = node.inputs[i]
            if v.name not in memo:
                bits = options.bits if v.kind == "param" else options.act_bits
                fq = g.add_node("FakeQuant", [v], [(f"{v.name}.fq", v.shape, v.dtype)], {"bits": bits},
                                name=f"{v.name}/fake_quant", domain="rctc", before=node)
                fq.meta.update({"phase": "forward", "operand": "param" if v.kind == "param" else "activation"})
                memo[v.name] = fq.outputs[0]
            node.set_input(i, memo[v.name])
    g.toposort()

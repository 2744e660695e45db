"""C emitters of the integer activations and their backward rules (rctc_iq_*)."""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.native.codegen.emit import Emit, emitter, numel, refuse, width


@emitter("IntRelu")
def int_relu(node: Node, cx: Emit) -> list[str]:
    q, e = node.inputs
    out, out_e = node.outputs
    if np.dtype(out.dtype) != np.dtype(q.dtype):
        raise refuse(node, "changes the dtype")
    return [f"rctc_iq_relu({numel(q)}u, {cx.ptr(q)}, {width(q)}, {cx.ptr(out)});",
            f"{cx.scalar(out_e)} = {cx.scalar(e)};"]


@emitter("IntReluGrad")
def int_relu_grad(node: Node, cx: Emit) -> list[str]:
    dq, de, q, _ = node.inputs
    dx, dx_e = node.outputs
    if np.dtype(dx.dtype) != np.dtype(dq.dtype):
        raise refuse(node, "changes the dtype")
    return [f"rctc_iq_relu_backward({numel(q)}u, {cx.ptr(q)}, {width(q)}, {cx.ptr(dq)}, {width(dq)}, "
            f"{cx.ptr(dx)});",
            f"{cx.scalar(dx_e)} = {cx.scalar(de)};"]

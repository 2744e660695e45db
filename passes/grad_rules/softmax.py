"""Gradient rules of Softmax and LogSoftmax (opset-13 semantics: one axis, default -1).

Both read the forward output y: ``SoftmaxGrad(dy, y; axis)`` = y * (dy - sum(dy * y)),
``LogSoftmaxGrad(dy, y; axis)`` = dy - exp(y) * sum(dy), sums along ``axis``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rctc.ir import Node, Value
from rctc.passes.grad_rules import rule
from rctc.passes.grad_rules.elementwise import wants

if TYPE_CHECKING:
    from rctc.passes.build_backward import BackwardBuilder


def _axis(node: Node) -> int:
    rank = len(node.inputs[0].shape)
    axis = int(node.attrs.get("axis", -1))
    return axis + rank if axis < 0 else axis


@rule("Softmax", "LogSoftmax")
def softmax_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    """SoftmaxGrad / LogSoftmaxGrad from the forward output y (both only need dy, y and the axis)."""
    x = node.inputs[0]
    if not wants(b, x):
        return [None]
    return [b.like(f"{node.op_type}Grad", [dys[0], node.outputs[0]], x, {"axis": _axis(node)})]

"""Gradient rules of the unary activations (HardSigmoid, HardSwish, Elu, Selu, Celu, Softplus,
Softsign, Erf, Exp, Log, Sqrt, Reciprocal, Abs), Neg, and Pow (w.r.t. its base).

Each activation (trait ``unary-activation`` in rctc/ops/activations.py) emits ``<Op>Grad(dy, x)``
with the forward's attributes (the derivative table is runtime/kernels/grad_activations.py);
Neg emits ``Neg(dy)``; Pow emits ``PowGrad(dy, x, p)`` at the output's shape, summed back to the
base's shape. Pow's exponent gets no gradient: a differentiable exponent on a gradient path is
refused at compile time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rctc.errors import UnsupportedOpError
from rctc.ir import Node, Value
from rctc.ops import UNARY_ATTRS
from rctc.passes.grad_rules import rule
from rctc.passes.grad_rules.elementwise import wants

if TYPE_CHECKING:
    from rctc.passes.build_backward import BackwardBuilder

#: op -> the attributes its derivative reads (the definition's attributes)
UNARY = UNARY_ATTRS


@rule(*UNARY)
def unary_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    x = node.inputs[0]
    if dys[0] is None or not wants(b, x):
        return [None]
    attrs = {k: node.attrs[k] for k in UNARY[node.op_type] if k in node.attrs}
    return [b.like(f"{node.op_type}Grad", [dys[0], x], x, attrs)]


@rule("Neg")
def neg_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    x = node.inputs[0]
    if dys[0] is None or not wants(b, x):
        return [None]
    return [b.like("Neg", [dys[0]], x)]


@rule("Pow")
def pow_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    x, p = node.inputs[0], node.inputs[1]
    if wants(b, p):
        raise UnsupportedOpError(
            f"Pow {node.name!r}: the exponent {p.name!r} is on a gradient path; rctc differentiates Pow "
            "only w.r.t. its base (make the exponent a constant, or freeze what computes it)")
    if dys[0] is None or not wants(b, x):
        return [None, None]
    out = node.outputs[0]
    full = b.op("PowGrad", [dys[0], x, p], [(f"grad::{x.name}.full", out.shape, out.dtype)])[0]
    return [b.reduce_to(full, x), None]

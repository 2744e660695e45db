"""The unary activations with a derivative table: HardSigmoid, HardSwish, Elu, Selu, Celu,
Softplus, Softsign, Erf, Exp, Log, Sqrt, Reciprocal, Abs, and their ``<Op>Grad`` ops; PRelu
(a trainable slope; its definition carries its gradient rule).

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: one definition per activation with the ``UNARY_ACTIVATION`` trait: its gradient is
``<Op>Grad(dy, x)`` carrying the forward's attributes (``attrs`` lists the ones the derivative
reads). In rct mode they run as float islands.
"""

from __future__ import annotations

from typing import Any

from rctc.ops.costs import per_output
from rctc.ops.schema import ELEMENTWISE, GRADIENT, UNARY_ACTIVATION, WEIGHTED, OpDef, define, definer

SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875

op = definer("activations", traits={ELEMENTWISE, UNARY_ACTIVATION}, differentiable=("X",))
grad = definer("activations", domain="rctc", outputs=("dX",), traits={ELEMENTWISE, GRADIENT})


def _unary(name: str, fwd: dict[str, int], bwd: dict[str, int], attrs: dict | None = None,
           integer: bool = False) -> None:
    """``integer``: rct lowers the op and its gradient to ``Int<name>`` / ``Int<name>Grad``."""
    op(name, ("X",), attrs=attrs or {}, cost=per_output(**fwd), rct_lowering=(f"Int{name}",) if integer else ())
    grad(f"{name}Grad", ("dY", "X"), attrs=attrs or {}, cost=per_output(**bwd),
         rct_lowering=(f"Int{name}Grad",) if integer else ())


_unary("HardSigmoid", {"mult": 1, "add": 1, "cmp": 2}, {"mult": 2, "add": 1, "cmp": 2}, {"alpha": 0.2, "beta": 0.5},
       integer=True)
_unary("HardSwish", {"mult": 2, "add": 1, "cmp": 2}, {"mult": 2, "add": 1, "cmp": 2}, integer=True)
_unary("Elu", {"special": 1, "mult": 1, "cmp": 1}, {"special": 1, "mult": 2, "cmp": 1}, {"alpha": 1.0})
_unary("Selu", {"special": 1, "mult": 2, "cmp": 1}, {"special": 1, "mult": 2, "cmp": 1},
       {"alpha": SELU_ALPHA, "gamma": SELU_GAMMA})
_unary("Celu", {"special": 1, "mult": 2, "cmp": 1}, {"special": 1, "mult": 2, "cmp": 1}, {"alpha": 1.0})
_unary("Softplus", {"special": 2, "add": 1, "cmp": 1}, {"special": 2, "add": 1, "mult": 1})
_unary("Softsign", {"special": 1, "add": 1}, {"special": 1, "add": 1, "mult": 2})
_unary("Erf", {"special": 2, "mult": 4, "add": 4}, {"special": 1, "mult": 3}, integer=True)
_unary("Exp", {"special": 1}, {"special": 1, "mult": 1}, integer=True)
_unary("Log", {"special": 1}, {"special": 1, "mult": 1})
_unary("Sqrt", {"special": 1}, {"special": 2, "mult": 1})
_unary("Reciprocal", {"special": 1}, {"special": 1, "mult": 2})
_unary("Abs", {"cmp": 1}, {"cmp": 1, "mult": 1})


# ----------------------------------------------------------------------------- PRelu
def _prelu_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    """y = x if x >= 0 else slope * x: dx = dy if x > 0 else slope * dy (PyTorch's convention at 0);
    dslope = sum over the broadcast of (x * dy where x <= 0)."""
    x, slope = node.inputs[0], node.inputs[1]
    dy, out = dys[0], node.outputs[0]
    if dy is None:
        return [None, None]
    dx = b.like("PReluGrad", [dy, x, slope], x) if b.wants(x) else None
    ds = None
    if b.wants(slope):
        full = b.op("PReluSlopeGrad", [dy, x], [(f"grad::{slope.name}.full", out.shape, out.dtype)])[0]
        ds = b.reduce_to(full, slope)
    return [dx, ds]


define(OpDef("PRelu", "activations", ("X", "slope"), traits=frozenset({ELEMENTWISE, WEIGHTED}),
             differentiable=("X", "slope"),
             param_slots=(1,), grad=_prelu_grad, cost=per_output(cmp=1, mult=1),
             doc="leaky ReLU with a trainable slope, broadcast to X (per channel as (C, 1, 1))"))
grad("PReluGrad", ("dY", "X", "slope"), cost=per_output(cmp=1, mult=1))
grad("PReluSlopeGrad", ("dY", "X"), outputs=("dslope_full",), cost=per_output(cmp=1, mult=1),
     doc="x * dy where x <= 0, at the output's shape (summed to the slope's shape by ReduceSumTo)")

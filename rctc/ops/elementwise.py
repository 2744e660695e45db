"""Element-wise arithmetic and the classic activations (Relu, LeakyRelu, Sigmoid, Tanh, Clip),
Dropout, Identity, Cast, Sum and Pow, with their gradient ops.

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the definitions. In rct mode these run as float islands (dequantised float32 values);
the binary ops with a constant operand may hold a parameter (``param_slots``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rctc.ops import costs
from rctc.ops.costs import e, per_output
from rctc.ops.schema import ALIAS, ELEMENTWISE, GRADIENT, NEEDS_RNG, VIEW, definer

op = definer("elementwise")
grad = definer("elementwise", domain="rctc", outputs=("dX",))

op("Add", ("A", "B"), traits={ELEMENTWISE}, rct_lowering=("IntAdd",), differentiable=("A", "B"), param_slots=(0, 1),
   cost=per_output(add=1))
op("Sub", ("A", "B"), rct_lowering=("IntSub",),
   traits={ELEMENTWISE}, differentiable=("A", "B"), param_slots=(0, 1), cost=per_output(add=1))
op("Mul", ("A", "B"), traits={ELEMENTWISE}, rct_lowering=("IntMul",), differentiable=("A", "B"), param_slots=(0, 1),
   cost=per_output(mult=1))
op("Div", ("A", "B"), traits={ELEMENTWISE}, differentiable=("A", "B"), cost=per_output(special=1))
op("Neg", ("X",), rct_lowering=("IntNeg",), traits={ELEMENTWISE}, differentiable=("X",), cost=per_output(add=1))
op("Pow", ("X", "Y"), traits={ELEMENTWISE}, differentiable=("X",), cost=per_output(special=1),
   doc="differentiable w.r.t. the base only")
op("Sum", ("*data_0",), traits={ELEMENTWISE},
   cost=costs.ops(lambda n, i, o: {"add": e(o) * max(len([v for v in i if v is not None]) - 1, 0)}))
op("Relu", ("X",), traits={ELEMENTWISE}, rct_lowering=("IntRelu",), differentiable=("X",), cost=per_output(cmp=1))
op("LeakyRelu", ("X",), rct_lowering=("IntLeakyRelu",),
   attrs={"alpha": 0.01}, traits={ELEMENTWISE}, differentiable=("X",),
   cost=per_output(cmp=1, mult=1))
op("Sigmoid", ("X",), rct_lowering=("IntSigmoid",),
   traits={ELEMENTWISE}, differentiable=("X",), cost=per_output(special=1, add=1))
op("Tanh", ("X",), rct_lowering=("IntTanh",),
   traits={ELEMENTWISE}, differentiable=("X",), cost=per_output(special=1, add=1))
op("Clip", ("input", "min?", "max?"), traits={ELEMENTWISE}, rct_lowering=("IntClip",),
   rct_float_when="min / max not one-element constants", differentiable=("input",), cost=per_output(cmp=2))
op("Dropout", ("data", "ratio?", "training_mode?"), outputs=("output", "mask?"), attrs={"seed": None},
   traits={ELEMENTWISE, NEEDS_RNG}, differentiable=("data",), cost=per_output(cmp=1, mult=1),
   limits=("reads its training_mode from",),
   doc="drops in train only: predict / eval / export run it as the identity, whatever training_mode says")
op("Identity", ("input",), traits={ELEMENTWISE, VIEW, ALIAS}, differentiable=("input",), cost=costs.free)
def _cast_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    """A float-to-float Cast passes the gradient back cast to the input's type (integer casts carry
    none: build_backward never sends a gradient through an integer value)."""
    x = node.input(0)
    if dys[0] is None or not b.wants(x):
        return [None]
    return [b.like("Cast", [dys[0]], x, {"to": np.dtype(x.dtype).name})]


op("Cast", ("input",), attrs={"to": None}, traits={ELEMENTWISE}, differentiable=("input",), grad=_cast_grad,
   cost=costs.free, doc="float-to-float casts are differentiable")

grad("ReluGrad", ("dY", "Y"), traits={ELEMENTWISE, GRADIENT}, rct_lowering=("IntReluGrad",), cost=per_output(cmp=1))
grad("LeakyReluGrad", ("dY", "X"), rct_lowering=("IntLeakyReluGrad",),
     attrs={"alpha": 0.01}, traits={ELEMENTWISE, GRADIENT},
     cost=per_output(cmp=1, mult=1))
grad("SigmoidGrad", ("dY", "Y"), rct_lowering=("IntSigmoidGrad",),
     traits={ELEMENTWISE, GRADIENT}, cost=per_output(mult=2, add=1))
grad("TanhGrad", ("dY", "Y"), rct_lowering=("IntTanhGrad",),
     traits={ELEMENTWISE, GRADIENT}, cost=per_output(mult=2, add=1))
grad("ClipGrad", ("dY", "X", "min?", "max?"), traits={ELEMENTWISE, GRADIENT}, rct_lowering=("IntClipGrad",),
     rct_float_when="min / max not one-element constants", cost=per_output(cmp=2))
grad("DropoutGrad", ("dY", "mask", "ratio?", "training_mode?"), traits={ELEMENTWISE, GRADIENT}, cost=per_output(mult=1))
grad("PowGrad", ("dY", "X", "P"), traits={ELEMENTWISE, GRADIENT}, cost=per_output(special=1, mult=2, add=1))

"""The unary activations with a derivative table: HardSigmoid, HardSwish, Elu, Selu, Celu,
Softplus, Softsign, Erf, Exp, Log, Sqrt, Reciprocal, Abs, and their ``<Op>Grad`` ops.

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: one definition per activation with the ``UNARY_ACTIVATION`` trait: its gradient is
``<Op>Grad(dy, x)`` carrying the forward's attributes (``attrs`` lists the ones the derivative
reads). In rct mode they run as float islands.
"""

from __future__ import annotations

from rctc.ops.costs import per_output
from rctc.ops.schema import ELEMENTWISE, GRADIENT, UNARY_ACTIVATION, definer

SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875

op = definer("activations", traits={ELEMENTWISE, UNARY_ACTIVATION}, differentiable=("X",))
grad = definer("activations", domain="rctc", outputs=("dX",), traits={ELEMENTWISE, GRADIENT})


def _unary(name: str, fwd: dict[str, int], bwd: dict[str, int], attrs: dict | None = None) -> None:
    op(name, ("X",), attrs=attrs or {}, cost=per_output(**fwd))
    grad(f"{name}Grad", ("dY", "X"), attrs=attrs or {}, cost=per_output(**bwd))


_unary("HardSigmoid", {"mult": 1, "add": 1, "cmp": 2}, {"mult": 2, "add": 1, "cmp": 2}, {"alpha": 0.2, "beta": 0.5})
_unary("HardSwish", {"mult": 2, "add": 1, "cmp": 2}, {"mult": 2, "add": 1, "cmp": 2})
_unary("Elu", {"special": 1, "mult": 1, "cmp": 1}, {"special": 1, "mult": 2, "cmp": 1}, {"alpha": 1.0})
_unary("Selu", {"special": 1, "mult": 2, "cmp": 1}, {"special": 1, "mult": 2, "cmp": 1},
       {"alpha": SELU_ALPHA, "gamma": SELU_GAMMA})
_unary("Celu", {"special": 1, "mult": 2, "cmp": 1}, {"special": 1, "mult": 2, "cmp": 1}, {"alpha": 1.0})
_unary("Softplus", {"special": 2, "add": 1, "cmp": 1}, {"special": 2, "add": 1, "mult": 1})
_unary("Softsign", {"special": 1, "add": 1}, {"special": 1, "add": 1, "mult": 2})
_unary("Erf", {"special": 2, "mult": 4, "add": 4}, {"special": 1, "mult": 3})
_unary("Exp", {"special": 1}, {"special": 1, "mult": 1})
_unary("Log", {"special": 1}, {"special": 1, "mult": 1})
_unary("Sqrt", {"special": 1}, {"special": 2, "mult": 1})
_unary("Reciprocal", {"special": 1}, {"special": 1, "mult": 2})
_unary("Abs", {"cmp": 1}, {"cmp": 1, "mult": 1})

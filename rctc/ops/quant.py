"""Quantisation plumbing: QuantAct / QuantGrad (float -> integer + exponent, rct), Dequantize
(accumulator -> float32 with the bias, rct) and FakeQuant (QAT's forward rounding).

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the definitions. ``QUANTISE`` ops produce an integer at their ``bits`` attribute;
``QUANT_HELPER`` ops belong to the layer of the product they feed or drain.
"""

from __future__ import annotations

from rctc.ops import costs
from rctc.ops.costs import e, per_output
from rctc.ops.schema import ELEMENTWISE, INTEGER, NEEDS_RNG, QUANT_HELPER, QUANTISE, definer

op = definer("quant", domain="rctc", traits={ELEMENTWISE, QUANT_HELPER})

op("QuantAct", ("X", "amax"), outputs=("q", "e", "amax_new"), attrs={"bits": 8, "momentum": 0.9},
   traits={ELEMENTWISE, QUANT_HELPER, QUANTISE, INTEGER}, modes={"rct"}, rct="integer",
   cost=per_output(cmp=3, mult=1, add=1), doc="activation to act_bits, exponent from the batch max")
op("QuantGrad", ("G",), outputs=("q", "e"), attrs={"bits": 8, "rounding": "stochastic"},
   traits={ELEMENTWISE, QUANT_HELPER, QUANTISE, INTEGER, NEEDS_RNG}, modes={"rct"}, rct="integer",
   cost=costs.ops(lambda n, i, o: {"cmp": 3 * e(o), "mult": e(o),
                                   "add": e(o) * (2 if n.attrs.get("rounding") == "stochastic" else 1)}),
   doc="error to grad_bits with stochastic rounding")
op("Dequantize", ("q", "e", "bias?"), attrs={"alpha": 1.0, "beta": 1.0, "bias_axis": -1}, modes={"rct"},
   cost=costs.ops(lambda n, i, o: {"mult": e(o), "add": e(o) if len(i) > 2 and i[2] is not None else 0}))
op("FakeQuant", ("X",), attrs={"bits": 8}, traits={ELEMENTWISE, QUANT_HELPER, QUANTISE}, modes={"qat"}, rct=None,
   differentiable=("X",), cost=per_output(cmp=3, mult=2, add=1), doc="straight-through gradient")

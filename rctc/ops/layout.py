"""Layout and data movement: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Shape, Concat,
Gather, Expand, Slice and their gradient ops.

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the definitions. ``LAYOUT`` ops rearrange elements, so insert_quant runs them on the
integers between a value and a product; ``RESHAPE`` ones also keep the element order;
``VIEW`` ops move no bytes. Gather's table (an embedding) may be a parameter.
"""

from __future__ import annotations

from rctc.ops import costs
from rctc.ops.costs import inp
from rctc.ops.schema import GRADIENT, LAYOUT, RESHAPE, VIEW, definer

op = definer("layout")
grad = definer("layout", domain="rctc", traits={GRADIENT})
_RESHAPE = {LAYOUT, RESHAPE, VIEW}

op("Reshape", ("data", "shape"), outputs=("reshaped",), attrs={"allowzero": 0}, traits=_RESHAPE,
   differentiable=("data",), cost=costs.free)
op("Flatten", ("input",), outputs=("output",), attrs={"axis": 1}, traits=_RESHAPE, differentiable=("input",),
   cost=costs.free)
op("Squeeze", ("data", "axes?"), outputs=("squeezed",), traits=_RESHAPE, differentiable=("data",), cost=costs.free)
op("Unsqueeze", ("data", "axes?"), outputs=("expanded",), traits=_RESHAPE, differentiable=("data",),
   cost=costs.free)
op("Transpose", ("data",), outputs=("transposed",), attrs={"perm": None}, traits={LAYOUT, VIEW},
   differentiable=("data",), cost=costs.free)
op("Shape", ("data",), outputs=("shape",), attrs={"end": None, "start": 0}, traits={VIEW}, rct="integer",
   cost=costs.free)
op("Concat", ("*inputs",), outputs=("concat_result",), attrs={"axis": None}, differentiable=("inputs",),
   cost=costs.free)
op("Gather", ("data", "indices"), outputs=("output",), attrs={"axis": 0}, differentiable=("data",),
   param_slots=(0,), cost=costs.free, doc="an embedding lookup when data is a parameter")
op("Expand", ("input", "shape"), cost=costs.free)
op("Slice", ("data", "starts", "ends", "axes?", "steps?"), cost=costs.free)

grad("ConcatGrad", ("dY",), outputs=("*dinputs",), attrs={"axis": None, "sizes": None}, cost=costs.free)
grad("GatherGrad", ("dY", "indices"), outputs=("ddata",), cost=costs.ops(lambda n, i, o: {"add": inp(i).size}))

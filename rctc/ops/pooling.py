"""Pooling and reductions: MaxPool, AveragePool, the global pools, ReduceSum, ReduceMean,
ArgMax, ReduceSumTo (a broadcast gradient summed back) and their gradient ops.

Needs: rctc.ops.schema, rctc.ops.costs (window sizes: rctc.ops.geometry).
Leaves: the definitions. In rct mode they run as float islands.
"""

from __future__ import annotations

from rctc.ops import costs
from rctc.ops.costs import e, inp, kernel_size, per_output
from rctc.ops.schema import GRADIENT, definer

op = definer("pooling")
grad = definer("pooling", domain="rctc", traits={GRADIENT}, outputs=("dX",))
_POOL = {"auto_pad": "NOTSET", "ceil_mode": 0, "kernel_shape": None, "pads": None, "strides": None}

op("MaxPool", ("X",), attrs={**_POOL, "dilations": None, "storage_order": 0}, differentiable=("X",),
   cost=costs.ops(lambda n, i, o: {"cmp": e(o) * (kernel_size(n) - 1)}))
op("AveragePool", ("X",), attrs={**_POOL, "count_include_pad": 0}, differentiable=("X",),
   cost=costs.ops(lambda n, i, o: {"add": e(o) * (kernel_size(n) - 1), "mult": e(o)}))
op("GlobalAveragePool", ("X",), differentiable=("X",),
   cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o), "mult": e(o)}))
op("GlobalMaxPool", ("X",), differentiable=("X",), cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size - e(o)}))
op("ReduceSum", ("data", "axes?"), outputs=("reduced",), attrs={"keepdims": 1, "noop_with_empty_axes": 0},
   differentiable=("data",), cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o)}))
op("ReduceMean", ("data", "axes?"), outputs=("reduced",), attrs={"keepdims": 1, "noop_with_empty_axes": 0},
   differentiable=("data",), cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o), "mult": e(o)}))
op("ArgMax", ("data",), outputs=("reduced",), attrs={"axis": 0, "keepdims": 1, "select_last_index": 0},
   cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size}))

grad("MaxPoolGrad", ("dY", "X"), attrs=_POOL,
     cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size * (kernel_size(n) - 1), "add": inp(i).size}))
grad("AveragePoolGrad", ("dY",), attrs=_POOL,
     cost=costs.ops(lambda n, i, o: {"mult": inp(i).size, "add": inp(i).size * kernel_size(n)}))
grad("GlobalAveragePoolGrad", ("dY",), cost=per_output(mult=1))
grad("ReduceSumTo", ("X",), attrs={"shape": None}, cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o)}),
     doc="sums a broadcast gradient back to an operand's shape")
grad("ReduceSumGrad", ("dY",), cost=per_output())
grad("ReduceMeanGrad", ("dY",), cost=per_output(mult=1))
grad("ConvGradBias", ("dY",), outputs=("dB",), cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o)}),
     doc="bias gradient of Conv (a sum over all but the channel axis)")

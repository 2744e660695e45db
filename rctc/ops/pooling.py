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

op("MaxPool", ("X",), rct_lowering=("IntMaxPool",),
   rct_float_when="a non-2-D input, dilations, ceil_mode, SAME auto_pad, storage_order or the Indices output",
   attrs={**_POOL, "dilations": None, "storage_order": 0}, differentiable=("X",),
   limits=("the optional Indices output is not supported",),
   cost=costs.ops(lambda n, i, o: {"cmp": e(o) * (kernel_size(n) - 1)}))
op("AveragePool", ("X",), attrs={**_POOL, "count_include_pad": 0}, differentiable=("X",),
   cost=costs.ops(lambda n, i, o: {"add": e(o) * (kernel_size(n) - 1), "mult": e(o)}))
op("GlobalAveragePool", ("X",), rct_lowering=("IntGlobalAveragePool",), differentiable=("X",),
   cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o), "mult": e(o)}))
op("GlobalMaxPool", ("X",), differentiable=("X",), cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size - e(o)}))
op("ReduceSum", ("data", "axes?"), outputs=("reduced",), attrs={"keepdims": 1, "noop_with_empty_axes": 0},
   differentiable=("data",), cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o)}))
op("ReduceMean", ("data", "axes?"), rct_lowering=("IntReduceMean",),
   rct_float_when="no axes (every axis reduced) or axes computed at run time",
   outputs=("reduced",), attrs={"keepdims": 1, "noop_with_empty_axes": 0},
   differentiable=("data",), cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o), "mult": e(o)}))
op("ArgMax", ("data",), outputs=("reduced",), attrs={"axis": 0, "keepdims": 1, "select_last_index": 0},
   cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size}))

grad("MaxPoolGrad", ("dY", "X"), rct_lowering=("IntMaxPoolGrad",),
     rct_float_when="a non-2-D input, dilations, ceil_mode, SAME auto_pad, storage_order or the Indices output",
     attrs=_POOL,
     cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size * (kernel_size(n) - 1), "add": inp(i).size}))
grad("AveragePoolGrad", ("dY",), attrs=_POOL,
     cost=costs.ops(lambda n, i, o: {"mult": inp(i).size, "add": inp(i).size * kernel_size(n)}))
grad("GlobalAveragePoolGrad", ("dY",), rct_lowering=("IntGlobalAveragePoolGrad",), cost=per_output(mult=1))
grad("ReduceSumTo", ("X",), rct_lowering=("IntReduceSum", "IntAddGrad"),
     rct_float_when="a shape that is not a broadcast of it",
     attrs={"shape": None}, cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o)}),
     doc="sums a broadcast gradient back to an operand's shape")
grad("ReduceSumGrad", ("dY",), cost=per_output())
grad("ReduceMeanGrad", ("dY",), rct_lowering=("IntReduceMeanGrad",), rct_float_when="no axes", cost=per_output(mult=1))
grad("ConvGradBias", ("dY",), outputs=("dB",), rct_lowering=("IntReduceSum",),
     rct_float_when="the sum feeds more than updates", cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o)}),
     doc="bias gradient of Conv (a sum over all but the channel axis)")

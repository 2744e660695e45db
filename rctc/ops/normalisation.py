"""Normalisation: BatchNormalization, LayerNormalization, InstanceNormalization, LRN, Softmax,
LogSoftmax and their gradient ops.

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the definitions (BatchNormalization's scale and bias are parameters, its running
mean and variance persistent buffers; InstanceNormalization's scale and bias are parameters
and its definition carries its gradient rule). In rct mode they run as float islands.
"""

from __future__ import annotations

from typing import Any

from rctc.ops import costs
from rctc.ops.costs import channels, e, per_output, rows
from rctc.ops.schema import GRADIENT, WEIGHTED, definer

op = definer("normalisation")
grad = definer("normalisation", domain="rctc", traits={GRADIENT})

op("BatchNormalization", ("X", "scale", "B", "input_mean", "input_var"),
   rct_lowering=("IntBatchNormalization",),
   rct_float_when="running statistics that are not buffers the step updates, or a 1-D input",
   outputs=("Y", "running_mean?", "running_var?"),
   attrs={"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0}, traits={WEIGHTED}, differentiable=("X", "scale", "B"),
   param_slots=(1, 2), buffer_slots=(3, 4), limits=("reads its running-statistics outputs",),
   cost=costs.ops(lambda n, i, o: {"add": 4 * e(o) + 2 * channels(o[0]), "mult": 3 * e(o) + 4 * channels(o[0]),
                                   "special": channels(o[0])}))
op("LayerNormalization", ("X", "Scale", "B?"), rct_lowering=("IntLayerNormalization",),
   rct_float_when="no bias, Mean / InvStdDev outputs that are read, or an output that is a graph output",
   outputs=("Y", "Mean?", "InvStdDev?"),
   attrs={"axis": -1, "epsilon": 1e-5, "stash_type": 1}, traits={WEIGHTED}, differentiable=("X", "Scale", "B"),
   param_slots=(1, 2),
   cost=costs.ops(lambda n, i, o: {"add": 4 * e(o), "mult": 3 * e(o),
                                   "special": rows(o[0], int(n.attrs.get("axis", -1)))}))
op("LRN", ("X",), attrs={"alpha": 1e-4, "beta": 0.75, "bias": 1.0, "size": None}, differentiable=("X",),
   cost=costs.ops(lambda n, i, o: {"add": e(o) * int(n.attrs.get("size", 1)), "mult": 2 * e(o), "special": e(o)}))
op("Softmax", ("input",), rct_lowering=("IntSoftmax",), outputs=("output",), attrs={"axis": -1},
   differentiable=("input",),
   cost=per_output(cmp=1, add=2, special=2))
op("LogSoftmax", ("input",), outputs=("output",), attrs={"axis": -1}, differentiable=("input",),
   cost=costs.ops(lambda n, i, o: {"cmp": e(o), "add": 2 * e(o), "special": e(o) + rows(o[0], -1)}))

grad("BatchNormGrad", ("dY", "X", "scale", "mean", "var"), rct_lowering=("IntBatchNormGrad",),
     rct_float_when="its forward stayed float, or dscale / dB feed more than updates", outputs=("dX", "dscale", "dB"),
     cost=costs.ops(lambda n, i, o: {"add": 4 * e(o), "mult": 4 * e(o) + 2 * channels(o[0])}))
grad("LayerNormGrad", ("dY", "X", "Scale"), rct_lowering=("IntLayerNormGrad",),
     rct_float_when="its forward stayed float, or dscale / dB feed more than updates",
     outputs=("dX", "dScale", "dB"), cost=per_output(add=4, mult=4))
grad("LRNGrad", ("dY", "X"), outputs=("dX",),
     cost=costs.ops(lambda n, i, o: {"add": e(o) * (2 * int(n.attrs.get("size", 1)) + 1), "mult": 7 * e(o),
                                     "special": 3 * e(o)}))
grad("SoftmaxGrad", ("dY", "Y"), rct_lowering=("IntSoftmaxGrad",), rct_float_when="its forward stayed float",
     outputs=("dX",), cost=per_output(mult=2, add=2))
grad("LogSoftmaxGrad", ("dY", "Y"), outputs=("dX",), cost=per_output(special=1, mult=1, add=2))



def _instance_norm_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    """y = scale[c] * (x - mean) / sqrt(var + eps) + B[c], statistics per (sample, channel) over the
    spatial axes: one ``InstanceNormGrad(dy, x, scale) -> (dx, dscale, dB)`` recomputing them."""
    x, scale, bias = node.input(0), node.input(1), node.input(2)
    need = [b.wants(x), b.wants(scale), b.wants(bias)]
    if dys[0] is None or not any(need):
        return [None, None, None]
    outs = b.op("InstanceNormGrad", [dys[0], x, scale],
                [(f"grad::{v.name}", v.shape, v.dtype) for v in (x, scale, bias)],
                {"epsilon": float(node.attrs.get("epsilon", 1e-5))})
    return [o if n else None for o, n in zip(outs, need)]


# not WEIGHTED: PyTorch's GroupNorm export feeds it constant ones / zeros (Constant nodes), which
# must stay constants; an affine InstanceNorm's initializers (more than one channel) are parameters
op("InstanceNormalization", ("input", "scale", "B"), rct_lowering=("IntInstanceNormalization",),
   outputs=("output",), attrs={"epsilon": 1e-5},
   differentiable=("input", "scale", "B"), param_slots=(1, 2), grad=_instance_norm_grad,
   cost=costs.ops(lambda n, i, o: {"add": 4 * e(o), "mult": 3 * e(o), "special": rows(o[0], 2)}),
   doc="per-sample, per-channel normalisation (PyTorch's InstanceNorm and GroupNorm exports)")
grad("InstanceNormGrad", ("dY", "X", "scale"), rct_lowering=("IntInstanceNormGrad",),
     rct_float_when="its forward stayed float",
     outputs=("dX", "dscale", "dB"), attrs={"epsilon": 1e-5},
     cost=costs.ops(lambda n, i, o: {"add": 5 * e(o), "mult": 5 * e(o), "special": rows(o[0], 2)}))

"""Losses added by add_loss: SoftmaxCrossEntropy and MSELoss (masked means over the batch)
and their gradient ops.

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the definitions; the loss is differentiable w.r.t. its prediction only.
"""

from __future__ import annotations

from rctc.ops import costs
from rctc.ops.costs import inp, per_output, rows
from rctc.ops.schema import GRADIENT, LOSS, definer

op = definer("loss", domain="rctc", traits={LOSS}, outputs=("loss",))
grad = definer("loss", domain="rctc", traits={GRADIENT}, outputs=("dX",))

op("SoftmaxCrossEntropy", ("logits", "labels", "mask"), rct_lowering=("IntSoftmaxCrossEntropy",),
   rct_float_when="logits not 2-D", differentiable=("logits",),
   cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size, "add": 2 * inp(i).size + 2 * rows(inp(i), -1),
                                   "special": inp(i).size + rows(inp(i), -1), "mult": rows(inp(i), -1)}))
op("MSELoss", ("pred", "target", "mask"), differentiable=("pred",),
   cost=costs.ops(lambda n, i, o: {"add": 2 * inp(i).size, "mult": inp(i).size}))
grad("SoftmaxCrossEntropyGrad", ("dloss", "logits", "labels", "mask"),
     rct_lowering=("IntSoftmaxCrossEntropyGrad",),
     rct_float_when="a seed other than the loss's own 1, or logits not 2-D",
     cost=per_output(special=1, mult=2, add=1))
grad("MSELossGrad", ("dloss", "pred", "target", "mask"), cost=per_output(add=1, mult=2))

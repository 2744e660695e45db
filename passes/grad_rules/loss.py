"""Gradient rules of the rctc loss ops added by add_loss.

``SoftmaxCrossEntropy(logits, labels, mask)`` -> ``SoftmaxCrossEntropyGrad(dloss, logits, labels,
mask)`` = dloss * mask_i * (softmax(z_i) - onehot(y_i)) / max(sum(mask), 1).
``MSELoss(pred, target, mask)`` -> ``MSELossGrad(dloss, pred, target, mask)`` =
dloss * mask_i * 2 (pred - target) / (D * max(sum(mask), 1)), D the per-sample element count;
the target's gradient (rarely needed) is its negation. Labels and mask get no gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rctc.ir import Node, Value
from rctc.passes.grad_rules import rule
from rctc.passes.grad_rules.elementwise import wants

if TYPE_CHECKING:
    from rctc.passes.build_backward import BackwardBuilder


@rule("SoftmaxCrossEntropy")
def softmax_cross_entropy_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    logits, labels, mask = node.inputs[:3]
    if not wants(b, logits):
        return [None, None, None]
    return [b.like("SoftmaxCrossEntropyGrad", [dys[0], logits, labels, mask], logits), None, None]


@rule("MSELoss")
def mse_loss_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    pred, target, mask = node.inputs[:3]
    if not (wants(b, pred) or wants(b, target)):
        return [None, None, None]
    dpred = b.like("MSELossGrad", [dys[0], pred, target, mask], pred)
    dtarget = None
    if wants(b, target):
        full = b.op("Neg", [dpred], [(f"grad::{target.name}.full", pred.shape, pred.dtype)], domain="")[0]
        dtarget = b.reduce_to(full, target)
    return [dpred if wants(b, pred) else None, dtarget, None]

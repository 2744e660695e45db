"""Gradient rules of BatchNormalization, LayerNormalization and LRN.

BatchNormalization (after mark_trainable: outputs Y, new running mean, new running var) emits
``BatchNormGrad(dy, x, scale, mean, var; epsilon, training_mode) -> (dx, dscale, dbias)``;
the kernel differentiates through the batch statistics in training (biased variance, as the
forward kernel) and through the running statistics otherwise. Only Y carries a gradient.
LayerNormalization emits ``LayerNormGrad(dy, x, scale; axis, epsilon) -> (dx, dscale, dbias)``.
LRN emits ``LRNGrad(dy, x; size, alpha, beta, bias) -> dx`` (the kernel recomputes the window sums).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rctc.errors import UnsupportedOpError
from rctc.ir import Node, Value
from rctc.passes.grad_rules import rule
from rctc.passes.grad_rules.elementwise import wants

if TYPE_CHECKING:
    from rctc.passes.build_backward import BackwardBuilder


def _only_first(node: Node, dys: list[Value | None]) -> None:
    extra = [node.outputs[i].name for i, d in enumerate(dys) if i > 0 and d is not None]
    if extra:
        raise UnsupportedOpError(
            f"{node.op_type} {node.name!r}: gradients through its statistics outputs ({', '.join(extra)}) "
            "are not supported"
        )


@rule("BatchNormalization")
def batch_norm_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    _only_first(node, dys)
    x, scale, bias, mean, var = (node.input(i) for i in range(5))
    need = [wants(b, x), wants(b, scale), wants(b, bias)]
    if dys[0] is None or not any(need):
        return [None] * len(node.inputs)
    attrs = {"epsilon": float(node.attrs.get("epsilon", 1e-5)),
             "training_mode": int(node.attrs.get("training_mode", 0))}
    outs = b.op(
        "BatchNormGrad",
        [dys[0], x, scale, mean, var],
        [(f"grad::{x.name}", x.shape, x.dtype), (f"grad::{scale.name}", scale.shape, scale.dtype),
         (f"grad::{bias.name}", bias.shape, bias.dtype)],
        attrs,
    )
    return [o if n else None for o, n in zip(outs, need)] + [None, None]


@rule("LayerNormalization")
def layer_norm_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    _only_first(node, dys)
    x, scale, bias = node.input(0), node.input(1), node.input(2)
    need = [wants(b, x), wants(b, scale), wants(b, bias)]
    if dys[0] is None or not any(need):
        return [None] * len(node.inputs)
    axis = int(node.attrs.get("axis", -1))
    axis = axis + len(x.shape) if axis < 0 else axis
    attrs = {"axis": axis, "epsilon": float(node.attrs.get("epsilon", 1e-5))}
    bias_like = bias if bias is not None else scale
    outs = b.op(
        "LayerNormGrad",
        [dys[0], x, scale],
        [(f"grad::{x.name}", x.shape, x.dtype), (f"grad::{scale.name}", scale.shape, scale.dtype),
         (f"grad::{bias_like.name}", bias_like.shape, bias_like.dtype)],
        attrs,
    )
    return [o if n else None for o, n in zip(outs, need)][: len(node.inputs)]


@rule("LRN")
def lrn_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    x = node.input(0)
    if dys[0] is None or not wants(b, x):
        return [None]
    attrs = {"size": int(node.attrs["size"]), "alpha": float(node.attrs.get("alpha", 1e-4)),
             "beta": float(node.attrs.get("beta", 0.75)), "bias": float(node.attrs.get("bias", 1.0))}
    (dx,) = b.op("LRNGrad", [dys[0], x], [(f"grad::{x.name}", x.shape, x.dtype)], attrs)
    return [dx]

"""Gradient rules of element-wise ops: Add, Sub, Mul, Div (broadcasting), activations, Clip,
Dropout, Identity.

Broadcast operands get their gradient summed back to their own shape (``ReduceSumTo``).
Products and quotients use standard ONNX ops (Mul, Div, Neg); activations use rctc ops
(see runtime/kernels/grad_elementwise.py for their conventions). Integer operands get no
gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rctc.errors import UnsupportedOpError
from rctc.ir import Node, Value
from rctc.passes.grad_rules import rule

if TYPE_CHECKING:
    from rctc.passes.build_backward import BackwardBuilder


def wants(b: BackwardBuilder, v: Value | None) -> bool:
    """Whether ``v`` needs a gradient: on a gradient path and of a float type."""
    return b.wants(v)


def _full(b: BackwardBuilder, op: str, ins: list[Value], target: Value, out: Value) -> Value:
    """``op(ins)`` at the broadcast output shape, summed down to ``target``'s shape."""
    if tuple(target.shape) == tuple(out.shape):
        return b.like(op, ins, target)
    full = b.op(op, ins, [(f"grad::{target.name}.full", out.shape, out.dtype)], domain="")[0]
    return b.reduce_to(full, target)


def _pad(grads: list[Value | None], node: Node) -> list[Value | None]:
    return grads + [None] * (len(node.inputs) - len(grads))


@rule("Add")
def add_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    dy = dys[0]
    a, c = node.inputs[0], node.inputs[1]
    return [b.reduce_to(dy, a) if wants(b, a) else None, b.reduce_to(dy, c) if wants(b, c) else None]


@rule("Sub")
def sub_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    dy = dys[0]
    a, c = node.inputs[0], node.inputs[1]
    da = b.reduce_to(dy, a) if wants(b, a) else None
    dc = b.like("Neg", [b.reduce_to(dy, c)], c, suffix=".neg") if wants(b, c) else None
    return [da, dc]


@rule("Mul")
def mul_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    dy, out = dys[0], node.outputs[0]
    a, c = node.inputs[0], node.inputs[1]
    da = _full(b, "Mul", [dy, c], a, out) if wants(b, a) else None
    dc = _full(b, "Mul", [dy, a], c, out) if wants(b, c) else None
    return [da, dc]


@rule("Div")
def div_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    """y = a / c: da = dy / c; dc = -(dy / c) * y."""
    dy, out = dys[0], node.outputs[0]
    a, c = node.inputs[0], node.inputs[1]
    if not (wants(b, a) or wants(b, c)):
        return [None, None]
    q = b.op("Div", [dy, c], [(f"grad::{a.name}.full", out.shape, out.dtype)], domain="")[0]
    da = b.reduce_to(q, a) if wants(b, a) else None
    dc = None
    if wants(b, c):
        qy = b.op("Mul", [q, out], [(f"grad::{c.name}.full", out.shape, out.dtype)], domain="")[0]
        dc = b.like("Neg", [b.reduce_to(qy, c)], c, suffix=".neg")
    return [da, dc]


Grads = list[Value | None]


def _unary(op: str, uses_output: bool = False, attr_names: tuple[str, ...] = ()) -> Callable[..., Grads]:
    def fn(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
        x = node.inputs[0]
        if not wants(b, x):
            return _pad([None], node)
        other = node.outputs[0] if uses_output else x
        attrs = {k: node.attrs[k] for k in attr_names if k in node.attrs}
        return _pad([b.like(op, [dys[0], other], x, attrs)], node)

    return fn


# ReLU's mask from its output (y > 0 exactly where x > 0, as PyTorch's threshold_backward on the
# result): the output is kept for the next layer anyway, so the pre-activation need not be
rule("Relu")(_unary("ReluGrad", uses_output=True))
rule("LeakyRelu")(_unary("LeakyReluGrad", attr_names=("alpha",)))
rule("Sigmoid")(_unary("SigmoidGrad", uses_output=True))
rule("Tanh")(_unary("TanhGrad", uses_output=True))


@rule("Clip")
def clip_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    """Gradient passes where min < x < max; min / max are optional inputs (opset >= 11) or attributes."""
    x = node.inputs[0]
    if not wants(b, x):
        return _pad([None], node)
    attrs = {k: float(node.attrs[k]) for k in ("min", "max") if k in node.attrs}
    dx = b.like("ClipGrad", [dys[0], x, node.input(1), node.input(2)], x, attrs)
    return _pad([dx], node)


@rule("Dropout")
def dropout_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    """dx = dy * mask / (1 - ratio) in training; reads the mask output canonicalize adds."""
    x = node.inputs[0]
    if not wants(b, x) or dys[0] is None:
        return _pad([None], node)
    if len(node.outputs) < 2:
        raise UnsupportedOpError(
            f"Dropout {node.name!r} has no mask output; run canonicalize before build_backward"
        )
    attrs = {"ratio": float(node.attrs.get("ratio", 0.5))}
    dx = b.like("DropoutGrad", [dys[0], node.outputs[1], node.input(1), node.input(2)], x, attrs)
    return _pad([dx], node)


@rule("Identity")
def identity_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    return [dys[0] if wants(b, node.inputs[0]) else None]

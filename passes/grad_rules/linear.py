"""Gradient rules of the GEMM-class ops: Conv, Gemm, MatMul.

Every product of the backward pass is its own node, tagged for the RCT lowering in
``node.meta``: ``grad_role`` is ``"data"`` (gradient of input 0, the activation),
``"weight"`` (of input 1) or ``"bias"`` (of input 2), and ``grad_input`` is that input index.

* Conv -> ``ConvGradInput(dy, W)``, ``ConvGradWeight(dy, X)``, ``ConvGradBias(dy)`` (rctc ops, see
  runtime/kernels/grad_linear.py). Window attrs are copied with ``auto_pad`` resolved to explicit
  ``pads``: ``kernel_shape, strides, pads, dilations, group`` plus ``input_shape`` /
  ``weight_shape``.
* Gemm (Y = alpha * A' @ B' + beta * C) -> dA and dB as one ONNX Gemm each, always with
  transA=0 (the canonical form canonicalize establishes): a transposed left operand is an explicit
  ``Transpose`` node (a free view in the runtime), a transposed right operand is ``transB=1``;
  alpha is carried over. dC = beta * ReduceSumTo(dY, C.shape) (a Mul only when beta != 1).
* MatMul -> 2-D x 2-D: two Gemm nodes as above; N-D x 2-D (a linear layer over a batch of rows):
  dA = Gemm(dY rows, B, transB=1) reshaped back, dB = Gemm(Transpose(A rows), dY rows) -- one
  GEMM over all batch rows, no batched product + reduction; otherwise MatMul with a Transpose of
  the other operand (swap of the last two axes), summed to the operand's shape (ReduceSumTo)
  where its batch dims were broadcast. 1-D operands are promoted with Reshape as numpy/ONNX do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from rctc.ir import Node, Value
from rctc.ops.geometry import window_params
from rctc.passes.grad_rules import rule

if TYPE_CHECKING:
    from rctc.passes.build_backward import BackwardBuilder

_ROLES = ("data", "weight", "bias")


def _tag(v: Value, idx: int) -> Value:
    """Mark the producer of ``v`` as the gradient product of forward input ``idx``."""
    assert v.producer is not None
    v.producer.meta.update({"grad_role": _ROLES[idx], "grad_input": idx})
    return v


def _ints(v: Any) -> list[int]:
    return [int(a) for a in np.asarray(v).reshape(-1)]


# ----------------------------------------------------------------------------- Conv
@rule("Conv")
def conv_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    dy = dys[0]
    x, w, bias = node.input(0), node.input(1), node.input(2)
    assert dy is not None and x is not None and w is not None
    kernel = _ints(node.attrs.get("kernel_shape", w.shape[2:]))
    strides, dilations, pads, _ = window_params(node.attrs, x.shape, kernel)
    win = {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dilations,
           "group": int(node.attrs.get("group", 1))}
    grads: list[Value | None] = [None] * len(node.inputs)
    if b.needs(x):
        grads[0] = _tag(b.like("ConvGradInput", [dy, w], x, {**win, "input_shape": list(x.shape)}), 0)
    if b.needs(w):
        grads[1] = _tag(b.like("ConvGradWeight", [dy, x], w, {**win, "weight_shape": list(w.shape)}), 1)
    if bias is not None and b.needs(bias):
        grads[2] = _tag(b.like("ConvGradBias", [dy], bias), 2)
    return grads


# ----------------------------------------------------------------------------- Gemm
def _reshape(b: BackwardBuilder, v: Value, shape: tuple[int, ...], name: str) -> Value:
    if tuple(v.shape) == tuple(shape):
        return v
    k = b.g.add_const(f"{name}.shape", np.asarray(shape, dtype=np.int64))
    return b.op("Reshape", [v, k], [(name, shape, v.dtype)])[0]


def _swap_last(b: BackwardBuilder, v: Value) -> Value:
    r = len(v.shape)
    perm = list(range(r - 2)) + [r - 1, r - 2]
    shape = tuple(v.shape[:-2]) + (v.shape[-1], v.shape[-2])
    return b.op("Transpose", [v], [(f"{v.name}.T", shape, v.dtype)], {"perm": perm})[0]


def _scale(b: BackwardBuilder, g: Value, factor: float, like: Value) -> Value:
    if factor == 1.0:
        return g
    k = b.g.add_const(f"{like.name}.grad_scale", np.asarray(factor, dtype=g.dtype))
    return b.like("Mul", [g, k], like, suffix=".scaled")


@rule("Gemm")
def gemm_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    """dA' = alpha dY B'^T, dB' = alpha A'^T dY, each one Gemm (transA=0); dC = beta sum(dY)."""
    dy = dys[0]
    a, w, c = node.input(0), node.input(1), node.input(2)
    assert dy is not None and a is not None and w is not None
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    ta, tb = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
    grads: list[Value | None] = [None] * len(node.inputs)
    if b.needs(a):
        if not ta:  # dA = alpha dY B'^T
            ins, trans_b = [dy, w], 1 - tb
        else:  # dA = (alpha dY B'^T)^T = alpha B' dY^T
            ins, trans_b = [_swap_last(b, w) if tb else w, dy], 1
        grads[0] = _tag(b.like("Gemm", ins, a, {"alpha": alpha, "transA": 0, "transB": trans_b}), 0)
    if b.needs(w):
        if not tb:  # dB = alpha A'^T dY
            ins, trans_b = [a if ta else _swap_last(b, a), dy], 0
        else:  # dB = alpha dY^T A'
            ins, trans_b = [_swap_last(b, dy), a], ta
        grads[1] = _tag(b.like("Gemm", ins, w, {"alpha": alpha, "transA": 0, "transB": trans_b}), 1)
    if c is not None and b.needs(c):
        grads[2] = _scale(b, b.reduce_to(dy, c), beta, c)
        if grads[2] is not dy:
            _tag(grads[2], 2)
    return grads


# ----------------------------------------------------------------------------- MatMul
@rule("MatMul")
def matmul_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    """Y = A @ B (numpy semantics, batch dims broadcast both ways, 1-D operands promoted)."""
    dy = dys[0]
    a, w = node.input(0), node.input(1)
    assert dy is not None and a is not None and w is not None
    need_a, need_w = b.needs(a), b.needs(w)
    # promote 1-D operands the way matmul does; dY gets the matching size-1 axes back
    a2 = _reshape(b, a, (1,) + tuple(a.shape), f"{a.name}.2d") if len(a.shape) == 1 else a
    w2 = _reshape(b, w, tuple(w.shape) + (1,), f"{w.name}.2d") if len(w.shape) == 1 else w
    batch = tuple(np.broadcast_shapes(tuple(a2.shape[:-2]), tuple(w2.shape[:-2])))
    m, k, n = a2.shape[-2], a2.shape[-1], w2.shape[-1]
    dy2 = _reshape(b, dy, batch + (m, n), f"{dy.name}.2d")
    ga: Value | None = None
    gw: Value | None = None
    if len(a2.shape) == 2 and len(w2.shape) == 2:
        if need_a:
            ga = b.op("Gemm", [dy2, w2], [(f"grad::{a2.name}", a2.shape, a.dtype)], {"transB": 1})[0]
        if need_w:
            gw = b.op("Gemm", [_swap_last(b, a2), dy2], [(f"grad::{w2.name}", w2.shape, w.dtype)])[0]
    elif len(w2.shape) == 2:  # (..., M, K) @ (K, N): fold the batch into the rows
        rows = math.prod(a2.shape[:-1])
        dy_rows = _reshape(b, dy2, (rows, n), f"{dy.name}.rows")
        if need_a:
            g = b.op("Gemm", [dy_rows, w2], [(f"grad::{a2.name}.rows", (rows, k), a.dtype)], {"transB": 1})[0]
            ga = _reshape(b, g, tuple(a2.shape), f"grad::{a2.name}")
        if need_w:
            a_rows = _reshape(b, a2, (rows, k), f"{a2.name}.rows")
            gw = b.op("Gemm", [_swap_last(b, a_rows), dy_rows], [(f"grad::{w2.name}", w2.shape, w.dtype)])[0]
    else:
        if need_a:
            g = b.op("MatMul", [dy2, _swap_last(b, w2)], [(f"grad::{a2.name}.full", batch + (m, k), a.dtype)])[0]
            ga = b.reduce_to(g, a2)
        if need_w:
            g = b.op("MatMul", [_swap_last(b, a2), dy2], [(f"grad::{w2.name}.full", batch + (k, n), w.dtype)])[0]
            gw = b.reduce_to(g, w2)
    # tag the products (the producers of the GEMM results, before reductions / reshapes)
    for g, idx in ((ga, 0), (gw, 1)):
        if g is not None:
            prod = g
            while prod.producer is not None and prod.producer.op_type in ("Reshape", "ReduceSumTo"):
                prod = prod.producer.inputs[0]
            _tag(prod, idx)
    ga = _reshape(b, ga, tuple(a.shape), f"grad::{a.name}") if ga is not None else None
    gw = _reshape(b, gw, tuple(w.shape), f"grad::{w.name}") if gw is not None else None
    return [ga, gw]

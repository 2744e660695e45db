"""C emitters of the integer activations and their backward rules (rctc_iq_*).

IntClip's bounds (float attributes) enter the C as exact ratios ``num / 2^log2den``, prepared
here as rctc.native.intops does; the kernel puts them on the input's grid at run time. The host
step (``cx.tasks``) calls the threaded variants of ReLU, Clip and their masks (``*_mt``,
iq_pointwise_mt.c: the same bytes at any thread count); a device step the serial ones.
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.native.codegen.emit import Emit, emitter, numel, refuse, width
from rctc.native.intops_base import BaseOps


def _call(cx: Emit, kernel: str, args: str) -> str:
    """``kernel(args);``, or its threaded variant on the host step's threads."""
    if getattr(cx, "tasks", False):
        return f"{kernel}_mt({cx.threads}, {args});"
    return f"{kernel}({args});"


@emitter("IntRelu")
def int_relu(node: Node, cx: Emit) -> list[str]:
    q, e = node.inputs
    out, out_e = node.outputs
    if np.dtype(out.dtype) != np.dtype(q.dtype):
        raise refuse(node, "changes the dtype")
    return [_call(cx, "rctc_iq_relu", f"{numel(q)}u, {cx.ptr(q)}, {width(q)}, {cx.ptr(out)}"),
            f"{cx.scalar(out_e)} = {cx.scalar(e)};"]


@emitter("IntReluGrad")
def int_relu_grad(node: Node, cx: Emit) -> list[str]:
    dq, de, q, _ = node.inputs
    dx, dx_e = node.outputs
    if np.dtype(dx.dtype) != np.dtype(dq.dtype):
        raise refuse(node, "changes the dtype")
    return [_call(cx, "rctc_iq_relu_backward",
                  f"{numel(q)}u, {cx.ptr(q)}, {width(q)}, {cx.ptr(dq)}, {width(dq)}, {cx.ptr(dx)}"),
            f"{cx.scalar(dx_e)} = {cx.scalar(de)};"]


def _bounds(node: Node) -> str:
    """``has_lo, lo_num, lo_log2den, has_hi, hi_num, hi_log2den`` of the clip's bounds, as C."""
    lo, hi = (None if node.attrs.get(k) is None else float(node.attrs[k]) for k in ("min", "max"))
    has_lo, ln, ll, has_hi, hn, hl = BaseOps._bounds(lo, hi)
    return f"{has_lo}, INT64_C({ln}), {ll}, {has_hi}, INT64_C({hn}), {hl}"


@emitter("IntClip")
def int_clip(node: Node, cx: Emit) -> list[str]:
    """intref.pointwise.clip: bounds on the input's grid (inward), exact; ReLU6."""
    q, e = node.inputs
    out, out_e = node.outputs
    if np.dtype(out.dtype) != np.dtype(q.dtype):
        raise refuse(node, "changes the dtype")
    return [_call(cx, "rctc_iq_clip", f"{numel(q)}u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {_bounds(node)}, "
                  f"{cx.ptr(out)}"),
            f"{cx.scalar(out_e)} = {cx.scalar(e)};"]


@emitter("IntClipGrad")
def int_clip_grad(node: Node, cx: Emit) -> list[str]:
    """intref.pointwise.clip_backward: dy where lo <= x <= hi on x's grid, else 0: exact."""
    dq, de, q, e = node.inputs
    dx, dx_e = node.outputs
    if np.dtype(dx.dtype) != np.dtype(dq.dtype) or tuple(dq.shape) != tuple(q.shape):
        raise refuse(node, "changes the dtype or the shape")
    return [_call(cx, "rctc_iq_clip_backward", f"{numel(q)}u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, "
                  f"{_bounds(node)}, {cx.ptr(dq)}, {width(dq)}, {cx.ptr(dx)}"),
            f"{cx.scalar(dx_e)} = {cx.scalar(de)};"]

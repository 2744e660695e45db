"""C emitters of the integer softmax and its backward (intref.expo; rctc_iq_softmax*).

Needs: the softmax axis as the middle axis of (outer, len, inner) of the C-contiguous input.
Leaves: i-exp numerators times a Q46 reciprocal of their sum, one rounding; the backward
``y (dy - sum(dy y))`` with one rounding (stochastic words from the node's stream, one per
element).
"""

from __future__ import annotations

import math

from rctc.ir import Node, Value
from rctc.native.codegen.emit import Emit, bits_of, call_rq, emitter, refuse, width, work_words


def _axis3(node: Node, v: Value) -> str:
    if not v.shape:
        raise refuse(node, "takes the softmax of a 0-d value")
    axis = int(node.attrs.get("axis", -1)) % len(v.shape)
    return f"{math.prod(v.shape[:axis])}u, {v.shape[axis]}u, {math.prod(v.shape[axis + 1:])}u"



@emitter("IntSoftmax")
def int_softmax(node: Node, cx: Emit) -> list[str]:
    q, e = node.inputs
    y, y_e = node.outputs
    bits = bits_of(node, y)
    lines, _ = work_words(node, cx, 2 * math.prod(q.shape), 0)
    return lines + call_rq(f"rctc_iq_softmax({_axis3(node, q)}, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {bits}, "
                           f"work, {cx.ptr(y)}", cx.scalar(y_e))


@emitter("IntSoftmaxGrad")
def int_softmax_grad(node: Node, cx: Emit) -> list[str]:
    dq, de, qy, ey = node.inputs
    dx, dx_e = node.outputs
    if tuple(dq.shape) != tuple(qy.shape):
        raise refuse(node, f"has an error of shape {tuple(dq.shape)} for an output of {tuple(qy.shape)}")
    bits = bits_of(node, dx)
    n = math.prod(qy.shape)
    lines, rand = work_words(node, cx, 2 * n, n)
    return lines + call_rq(f"rctc_iq_softmax_backward({_axis3(node, qy)}, {cx.ptr(qy)}, {width(qy)}, "
                           f"{cx.scalar(ey)}, {cx.ptr(dq)}, {width(dq)}, {cx.scalar(de)}, {bits}, {rand}, work, "
                           f"{cx.ptr(dx)}", cx.scalar(dx_e))

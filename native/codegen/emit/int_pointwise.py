"""C emitters of rctc/ops/integer_pointwise.py: the smooth activations (rctc_iq_sigmoid /
rctc_iq_tanh, hardswish, erf, exp, leaky_relu, hardsigmoid and their backward), IntSub
(rctc_iq_add with ``subtract``), IntNeg, IntConcat
(rctc_iq_concat), IntConcatGrad and IntGatherScatter (generated loops; the scatter's sum then
rctc_iq_requantize).

Needs: C-contiguous values. Leaves: the numpy kernels' bits (runtime/kernels/int_pointwise.py);
the random words of a stochastic rounding from the node's Philox stream, one per output element
(as ``rand_words``: the activations' backward and the scatter draw one per element of their
output).
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.native.codegen.emit import (
    Emit,
    bits_of,
    c_array,
    call_rq,
    ctype,
    emitter,
    numel,
    refuse,
    width,
    work_words,
)
from rctc.native.codegen.emit.elementwise import _binary
from rctc.runtime.intref.core import exact_ratio, fixed_point


def _exact_ratio(v: float) -> tuple[int, int]:
    n, d = exact_ratio(v)
    return n, d.bit_length() - 1


def _forward(kernel: str) -> object:
    def emit(node: Node, cx: Emit) -> list[str]:
        q, e = node.inputs
        y, y_e = node.outputs
        bits = bits_of(node, y)
        n = numel(q)
        lines, _ = work_words(node, cx, n, 0)
        return lines + call_rq(f"{kernel}({n}u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {bits}, work, {cx.ptr(y)}",
                               cx.scalar(y_e))
    return emit


def _backward(kernel: str) -> object:
    def emit(node: Node, cx: Emit) -> list[str]:
        dq, de, q, e = node.inputs
        dx, dx_e = node.outputs
        if tuple(dq.shape) != tuple(q.shape):
            raise refuse(node, f"has an error of shape {tuple(dq.shape)} for an input of {tuple(q.shape)}")
        bits = bits_of(node, dx)
        n = numel(q)
        lines, rand = work_words(node, cx, n, n)
        return lines + call_rq(f"{kernel}({n}u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {cx.ptr(dq)}, {width(dq)}, "
                               f"{cx.scalar(de)}, {bits}, {rand}, work, {cx.ptr(dx)}", cx.scalar(dx_e))
    return emit


emitter("IntSigmoid")(_forward("rctc_iq_sigmoid"))  # type: ignore[arg-type]
emitter("IntTanh")(_forward("rctc_iq_tanh"))  # type: ignore[arg-type]
emitter("IntSigmoidGrad")(_backward("rctc_iq_sigmoid_backward"))  # type: ignore[arg-type]
emitter("IntTanhGrad")(_backward("rctc_iq_tanh_backward"))  # type: ignore[arg-type]


@emitter("IntSub")
def int_sub(node: Node, cx: Emit) -> list[str]:
    """intref.arith.sub: both operands aligned exactly, subtracted, one rounding (IntAdd's kernel)."""
    return _binary(node, cx, "rctc_iq_add", subtract=True)


@emitter("IntNeg")
def int_neg(node: Node, cx: Emit) -> list[str]:
    """-q at the same exponent: exact (no -2^(bits-1) in the symmetric range)."""
    q, e = node.inputs
    y, y_e = node.outputs
    if np.dtype(y.dtype) != np.dtype(q.dtype):
        raise refuse(node, "changes the dtype")
    return [f"const {ctype(q)} *src = {cx.ptr(q)};", f"{ctype(y)} *dst = {cx.ptr(y)};",
            f"for (size_t i = 0; i < {numel(q)}u; i++) dst[i] = ({ctype(y)})-src[i];",
            f"{cx.scalar(y_e)} = {cx.scalar(e)};"]


def _outer_inner(shape: tuple[int, ...], axis: int) -> tuple[int, int]:
    return math.prod(shape[:axis]), math.prod(shape[axis + 1:])


@emitter("IntConcat")
def int_concat(node: Node, cx: Emit) -> list[str]:
    """intref.arith.concat: every input aligned to the finest exponent, one nearest rounding."""
    qs, es = node.inputs[0::2], node.inputs[1::2]
    y, y_e = node.outputs
    bits = bits_of(node, y)
    k = len(qs)
    if not 1 <= k <= 64:
        raise refuse(node, f"concatenates {k} inputs (1..64 are mapped)")
    axis = int(node.attrs["axis"]) % len(y.shape)
    outer, inner = _outer_inner(tuple(y.shape), axis)
    if any(_outer_inner(tuple(q.shape), axis) != (outer, inner) for q in qs):
        raise refuse(node, "has inputs that differ off the concatenation axis")
    lines, _ = work_words(node, cx, numel(y), 0)
    lines += [f"const void *const xs[{k}] = {{{', '.join(cx.ptr(q) for q in qs)}}};",
              c_array("int", "ws", [width(q) for q in qs]),
              f"const int exps[{k}] = {{{', '.join(cx.scalar(e) for e in es)}}};",
              c_array("int", "sizes", [int(q.shape[axis]) for q in qs])]
    return lines + call_rq(f"rctc_iq_concat({k}, xs, ws, exps, {outer}u, sizes, {inner}u, {bits}, work, {cx.ptr(y)}",
                           cx.scalar(y_e))


@emitter("IntConcatGrad")
def int_concat_grad(node: Node, cx: Emit) -> list[str]:
    """The selected pieces of dy along ``axis``: copies, the error's exponent."""
    dq, de = node.inputs
    axis = int(node.attrs["axis"]) % len(dq.shape)
    split = [int(s) for s in node.attrs["split"]]
    if sum(split) != dq.shape[axis]:
        raise refuse(node, f"splits dim {dq.shape[axis]} into {split}")
    outer, inner = _outer_inner(tuple(dq.shape), axis)
    offs = np.cumsum([0, *split]).tolist()
    lines = [f"const {ctype(dq)} *src = {cx.ptr(dq)};"]
    for k, i in enumerate(int(s) for s in node.attrs["select"]):
        out, out_e = node.outputs[2 * k], node.outputs[2 * k + 1]
        if np.dtype(out.dtype) != np.dtype(dq.dtype):
            raise refuse(node, "changes the dtype")
        row = split[i] * inner
        lines += ["{", f"    {ctype(out)} *dst = {cx.ptr(out)};",
                  f"    for (size_t o = 0; o < {outer}u; o++) memcpy(dst + o * {row}u, "
                  f"src + o * {dq.shape[axis] * inner}u + {offs[i] * inner}u, {row}u * sizeof *dst);",
                  f"    {cx.scalar(out_e)} = {cx.scalar(de)};", "}"]
    return lines


@emitter("IntGatherScatter")
def int_gather_scatter(node: Node, cx: Emit) -> list[str]:
    """Exact int64 scatter-add of Gather's error along ``axis`` into ``table_shape``, then one
    rounding to ``bits`` (rctc_iq_requantize)."""
    dq, de, idx = node.inputs
    out, out_e = node.outputs
    bits = bits_of(node, out)
    shape = tuple(int(s) for s in node.attrs["table_shape"])
    if tuple(out.shape) != shape or not shape:
        raise refuse(node, f"writes {tuple(out.shape)} for a table of {shape}")
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    n, ni = shape[axis], numel(idx)
    pre, post = _outer_inner(shape, axis)
    if numel(dq) != pre * ni * post:
        raise refuse(node, f"has an error of shape {tuple(dq.shape)} for {ni} indices into {shape}")
    total = numel(out)
    lines, rand = work_words(node, cx, total, total)
    lines += [f"const {ctype(dq)} *d = {cx.ptr(dq)};", f"const {ctype(idx)} *idx = {cx.ptr(idx)};",
              f"for (size_t i = 0; i < {total}u; i++) work[i] = 0;",
              f"for (size_t j = 0; j < {ni}u; j++) {{",
              "    int64_t k = (int64_t)idx[j];",
              f"    if (k < -{n} || k >= {n}) return RCTC_IQ_EDOMAIN;",
              f"    if (k < 0) k += {n};",
              f"    for (size_t o = 0; o < {pre}u; o++)",
              f"        for (size_t i = 0; i < {post}u; i++)",
              f"            work[(o * {n}u + (size_t)k) * {post}u + i] += (int64_t)d[(o * {ni}u + j) * {post}u + i];",
              "}"]
    return lines + call_rq(f"rctc_iq_requantize({total}u, work, {cx.scalar(de)}, {bits}, {rand}, {cx.ptr(out)}",
                           cx.scalar(out_e))


for _stem in ("rctc_iq_hardswish", "rctc_iq_erf", "rctc_iq_exp"):
    _name = {"rctc_iq_hardswish": "IntHardSwish", "rctc_iq_erf": "IntErf", "rctc_iq_exp": "IntExp"}[_stem]
    emitter(_name)(_forward(_stem))  # type: ignore[arg-type]
    emitter(f"{_name}Grad")(_backward(f"{_stem}_backward"))  # type: ignore[arg-type]


def _ratio(v: float) -> str:
    """A float32 attribute as the exact ratio ``num, log2(den)`` (intops_base._ratio)."""
    n, lg = _exact_ratio(float(v))
    return f"INT64_C({n}), {lg}"


@emitter("IntLeakyRelu")
def int_leaky_relu(node: Node, cx: Emit) -> list[str]:
    q, e = node.inputs
    y, y_e = node.outputs
    bits = bits_of(node, y)
    n = numel(q)
    lines, _ = work_words(node, cx, n, 0)
    alpha = fixed_point(float(node.attrs.get("alpha", 0.01)), 24)
    return lines + call_rq(f"rctc_iq_leaky_relu({n}u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, INT64_C({alpha}), "
                           f"{bits}, work, {cx.ptr(y)}", cx.scalar(y_e))


@emitter("IntLeakyReluGrad")
def int_leaky_relu_grad(node: Node, cx: Emit) -> list[str]:
    dq, de, q, _ = node.inputs
    dx, dx_e = node.outputs
    bits = bits_of(node, dx)
    n = numel(q)
    lines, rand = work_words(node, cx, n, n)
    alpha = fixed_point(float(node.attrs.get("alpha", 0.01)), 24)
    return lines + call_rq(f"rctc_iq_leaky_relu_backward({n}u, {cx.ptr(q)}, {width(q)}, {cx.ptr(dq)}, {width(dq)}, "
                           f"{cx.scalar(de)}, INT64_C({alpha}), {bits}, {rand}, work, {cx.ptr(dx)}", cx.scalar(dx_e))


def _hsig_args(node: Node) -> str:
    return f"{_ratio(node.attrs.get('alpha', 0.2))}, {_ratio(node.attrs.get('beta', 0.5))}"


@emitter("IntHardSigmoid")
def int_hardsigmoid(node: Node, cx: Emit) -> list[str]:
    q, e = node.inputs
    y, y_e = node.outputs
    bits = bits_of(node, y)
    n = numel(q)
    lines, _ = work_words(node, cx, n, 0)
    return lines + call_rq(f"rctc_iq_hardsigmoid({n}u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {_hsig_args(node)}, "
                           f"{bits}, work, {cx.ptr(y)}", cx.scalar(y_e))


@emitter("IntHardSigmoidGrad")
def int_hardsigmoid_grad(node: Node, cx: Emit) -> list[str]:
    dq, de, q, e = node.inputs
    dx, dx_e = node.outputs
    bits = bits_of(node, dx)
    n = numel(q)
    lines, rand = work_words(node, cx, n, n)
    return lines + call_rq(f"rctc_iq_hardsigmoid_backward({n}u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, "
                           f"{cx.ptr(dq)}, {width(dq)}, {cx.scalar(de)}, {_hsig_args(node)}, {bits}, {rand}, work, "
                           f"{cx.ptr(dx)}", cx.scalar(dx_e))

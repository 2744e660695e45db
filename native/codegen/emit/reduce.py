"""C emitters of the integer reductions: the exact sum (IntReduceSum) and the mean with its
backward rule (intref.pool.reduce_mean*; rctc_iq_reduce_mean*)."""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.native.codegen.emit import (
    Emit,
    bits_of,
    call_rq,
    ctype,
    emitter,
    loops,
    numel,
    refuse,
    strides,
    width,
    work_words,
)


@emitter("IntReduceSum")
def int_reduce_sum(node: Node, cx: Emit) -> list[str]:
    """Exact int64 sum over ``axes``; the kept axes keep their C order (the reshape to ``shape``)."""
    dq, de = node.inputs
    acc, acc_e = node.outputs
    if np.dtype(acc.dtype) != np.int64:
        raise refuse(node, "sums into a non-int64 accumulator")
    axes = {int(a) % len(dq.shape) for a in node.attrs["axes"]}
    kept = tuple(s for d, s in enumerate(dq.shape) if d not in axes)
    kstr = iter(strides(kept))
    ostr = [0 if d in axes else next(kstr) for d in range(len(dq.shape))]
    return [f"const {ctype(dq)} *src = {cx.ptr(dq)};", f"int64_t *dst = {cx.ptr(acc)};",
            f"for (size_t j = 0; j < {numel(acc)}u; j++) dst[j] = 0;",
            *loops(tuple(dq.shape), ostr, lambda i, o: f"dst[{o}] += (int64_t)src[{i}];"),
            f"{cx.scalar(acc_e)} = {cx.scalar(de)};"]


def _mean_axes(node: Node, shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """(kept, reduced) axes of a mean over ``axes`` of ``shape``."""
    nd = len(shape)
    axes = sorted({int(a) % nd for a in node.attrs["axes"]}) if nd else []
    if not axes:
        raise refuse(node, "averages over no axis")
    return [d for d in range(nd) if d not in axes], axes


def _permuted(shape: tuple[int, ...], kept: list[int], axes: list[int]) -> list[int] | None:
    """Element strides that move ``shape`` to (kept..., axes...) order, or None when the reduced
    axes are already one contiguous run (then (outer, red, inner) is a view)."""
    if axes == list(range(axes[0], axes[-1] + 1)):
        return None
    perm = kept + axes
    tstr = strides(tuple(shape[d] for d in perm))
    return [tstr[perm.index(d)] for d in range(len(shape))]


def _split(shape: tuple[int, ...], kept: list[int], axes: list[int], moved: bool) -> str:
    red = math.prod(shape[d] for d in axes)
    if moved:
        return f"{math.prod(shape[d] for d in kept)}u, {red}u, 1u"
    return f"{math.prod(shape[:axes[0]])}u, {red}u, {math.prod(shape[axes[-1] + 1:])}u"


@emitter("IntReduceMean")
def int_reduce_mean(node: Node, cx: Emit) -> list[str]:
    """intref.pool.reduce_mean: exact int64 sums times round(2^32 / n), one nearest rounding.
    Reduced axes that are not one contiguous run are first moved last by a copy in scratch."""
    q, e = node.inputs
    y, y_e = node.outputs
    bits = bits_of(node, y)
    shape = tuple(q.shape)
    kept, axes = _mean_axes(node, shape)
    per_in = _permuted(shape, kept, axes)
    n_out = math.prod(shape[d] for d in kept)
    lines, _ = work_words(node, cx, n_out + (-(-numel(q) * width(q) // 8) if per_in else 0), 0)
    src = cx.ptr(q)
    if per_in is not None:
        lines += [f"{ctype(q)} *xt = ({ctype(q)} *)(work + {n_out});", f"const {ctype(q)} *x = {src};",
                  *loops(shape, per_in, lambda i, o: f"xt[{o}] = x[{i}];")]
        src = "xt"
    return lines + call_rq(f"rctc_iq_reduce_mean({_split(shape, kept, axes, per_in is not None)}, {src}, "
                           f"{width(q)}, {cx.scalar(e)}, {bits}, work, {cx.ptr(y)}", cx.scalar(y_e))


@emitter("IntReduceMeanGrad")
def int_reduce_mean_grad(node: Node, cx: Emit) -> list[str]:
    """intref.pool.reduce_mean_backward: dy times round(2^32 / n) at every input element, one
    rounding (word i for input element i in C order; moved with the elements when the reduced
    axes are not contiguous)."""
    dq, de = node.inputs
    dx, dx_e = node.outputs
    bits = bits_of(node, dx)
    shape = tuple(int(s) for s in node.attrs["shape"])
    if tuple(dx.shape) != shape:
        raise refuse(node, f"writes shape {tuple(dx.shape)} for an input of shape {shape}")
    kept, axes = _mean_axes(node, shape)
    if numel(dq) != math.prod(shape[d] for d in kept):
        raise refuse(node, f"spreads an error of shape {tuple(dq.shape)} over {shape}")
    n = math.prod(shape)
    per_in = _permuted(shape, kept, axes)
    if per_in is None:
        lines, rand = work_words(node, cx, n, n)
        return lines + call_rq(f"rctc_iq_reduce_mean_backward({_split(shape, kept, axes, False)}, {cx.ptr(dq)}, "
                               f"{width(dq)}, {cx.scalar(de)}, {bits}, {rand}, work, {cx.ptr(dx)}", cx.scalar(dx_e))
    # the kernel works in (kept..., axes...) order: words moved there, the result moved back
    out_t = ctype(dx)
    lines, rand = work_words(node, cx, n + (-(-n * width(dx) // 8)), 2 * n)
    if rand != "NULL":
        lines += [f"uint32_t *rt = r + {n};", *loops(shape, per_in, lambda i, o: f"rt[{o}] = r[{i}];")]
        rand = "rt"
    lines += [f"{out_t} *yt = ({out_t} *)(work + {n});"]
    lines += call_rq(f"rctc_iq_reduce_mean_backward({_split(shape, kept, axes, True)}, {cx.ptr(dq)}, {width(dq)}, "
                     f"{cx.scalar(de)}, {bits}, {rand}, work, yt", cx.scalar(dx_e))
    return [*lines, f"{out_t} *dst = {cx.ptr(dx)};", *loops(shape, per_in, lambda i, o: f"dst[{i}] = yt[{o}];")]

"""C emitters of the integer binary element-wise ops (intref.arith; rctc_iq_add / rctc_iq_mul /
rctc_iq_reduce_to).

Needs: the operands' shapes (numpy broadcasting, e.g. (N, C, H, W) with (N, C, 1, 1), a bias of
(C,) against (B, T, C), a 0-d scale); the output in the storage of ``bits``. Leaves: one kernel
call per node reading each operand at its broadcast strides; the random words of a stochastic
rounding from the node's Philox stream, one per output element (as ``rand_words``).
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
    emitter,
    refuse,
    width,
    work_words,
)
from rctc.native.codegen.emit.requant import chunk_size, round_chunks
from rctc.native.intops_base import broadcast_strides

MAXDIM = 8  # RCTC_IQ_MAXDIM


def _dims(node: Node, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) > MAXDIM:
        raise refuse(node, f"has {len(shape)} dimensions (the kernels take at most {MAXDIM})")
    return shape or (1,)  # a 0-d result is one element



def _binary(node: Node, cx: Emit, kernel: str, subtract: bool = False) -> list[str]:
    """One broadcast kernel call; ``subtract`` (rctc_iq_add only) computes a - b."""
    qa, ea, qb, eb = node.inputs
    out, out_e = node.outputs
    bits = bits_of(node, out)
    try:
        shape = tuple(np.broadcast_shapes(tuple(qa.shape), tuple(qb.shape)))
    except ValueError:
        raise refuse(node, f"has operands of shapes {tuple(qa.shape)} and {tuple(qb.shape)}, which do not "
                           "broadcast") from None
    if tuple(out.shape) != shape:
        raise refuse(node, f"writes shape {tuple(out.shape)} for operands broadcasting to {shape}")
    dims = _dims(node, shape)
    n = math.prod(dims)
    arrays = [c_array("int", "shp", dims),
              c_array("ptrdiff_t", "sa", broadcast_strides(dims, tuple(qa.shape))),
              c_array("ptrdiff_t", "sb", broadcast_strides(dims, tuple(qb.shape)))]
    chunk = chunk_size(cx)
    if kernel == "rctc_iq_add" and n > chunk and not getattr(cx, "tasks", False):  # host steps: the whole kernel
        return arrays + _add_chunked(node, cx, len(dims), n, bits, chunk, subtract)
    lines, rand = work_words(node, cx, n, n)
    lines += arrays
    args = (f"{len(dims)}, shp, {cx.ptr(qa)}, {width(qa)}, sa, {cx.scalar(ea)}, {cx.ptr(qb)}, {width(qb)}, sb, "
            f"{cx.scalar(eb)}")
    if kernel == "rctc_iq_add":  # on the step's threads (fixed parts: the same bits at any count)
        kernel, args = "rctc_iq_add_mt", f"{cx.threads}, {args}, {int(subtract)}"
    return lines + call_rq(f"{kernel}({args}, {bits}, {rand}, work, {cx.ptr(out)}", cx.scalar(out_e))


def _add_chunked(node: Node, cx: Emit, ndim: int, n: int, bits: int, chunk: int, subtract: bool) -> list[str]:
    """rctc_iq_add over more elements than a chunk: the alignment once (rctc_iq_add_exps), then
    the exact sums of a chunk at a time (rctc_iq_add_range) rounded as the kernel rounds them
    (requant.round_chunks), so the scratch holds one chunk, not the whole sum and its words."""
    qa, ea, qb, eb = node.inputs
    a, b = f"{cx.ptr(qa)}, {width(qa)}, sa", f"{cx.ptr(qb)}, {width(qb)}, sb"

    def fill(i0: str, c: str, w: str) -> list[str]:
        return [f"rctc_iq_add_range({ndim}, shp, {a}, ka, {b}, kb, {int(subtract)}, {i0}, {c}, {w});"]

    return ["int ka = 0, kb = 0, ec = 0;",
            f"int rc = rctc_iq_add_exps({ndim}, shp, {a}, {cx.scalar(ea)}, {b}, {cx.scalar(eb)}, &ka, &kb, &ec);",
            "if (rc != 0) return rc;", *round_chunks(node, cx, n, bits, chunk, fill, "ec")]


@emitter("IntAdd")
def int_add(node: Node, cx: Emit) -> list[str]:
    """intref.arith.add: both operands aligned exactly, summed, one rounding."""
    return _binary(node, cx, "rctc_iq_add")


@emitter("IntMul")
def int_mul(node: Node, cx: Emit) -> list[str]:
    """intref.arith.mul: the exact product at ``ea + eb``, one rounding (also Mul's backward
    rule by a constant, which the gradient pass writes as IntMul)."""
    return _binary(node, cx, "rctc_iq_mul")


@emitter("IntAddGrad")
def int_add_grad(node: Node, cx: Emit) -> list[str]:
    """The error summed exactly over the broadcast axes to ``shape`` (intref.arith.reduce_to),
    then one rounding to ``bits``; words one per element of ``shape``."""
    dq, de = node.inputs
    out, out_e = node.outputs
    bits = bits_of(node, out)
    shape = tuple(int(s) for s in node.attrs["shape"])
    full = tuple(dq.shape)
    lead = len(full) - len(shape)
    if lead < 0 or any(s not in (1, full[i + lead]) for i, s in enumerate(shape)) or tuple(out.shape) != shape:
        raise refuse(node, f"sums an error of shape {full} to {shape}, which does not broadcast to it")
    dims = _dims(node, full)
    n_red = max(1, math.prod(shape))
    lines, rand = work_words(node, cx, n_red, n_red)
    lines += [c_array("int", "shp", dims), c_array("ptrdiff_t", "rs", broadcast_strides(dims, shape))]
    return lines + call_rq(f"rctc_iq_reduce_to({len(dims)}, shp, {cx.ptr(dq)}, {width(dq)}, 0, NULL, 0, NULL, rs, "
                           f"{n_red}u, {cx.scalar(de)}, {bits}, {rand}, work, {cx.ptr(out)}", cx.scalar(out_e))

"""C emitters of the integer normalisations (intref.norm; rctc_iq_batchnorm_* / rctc_iq_layernorm*).

Needs: BatchNorm on (B, C, ...) (channel axis 1), LayerNorm over ``axis..`` (rows (G, N)); the
float attributes enter the C as integers prepared here with intref's helpers: epsilon as the
exact ratio of the float attribute, the momentum as ``fixed_point(momentum, 16)``.
Leaves: BatchNorm in training mode (batch statistics; the running mean / variance written to
the node's ``*_new`` outputs, which the generator copies into the state at the step's end);
the backward rules' dx at ``bits`` (stochastic words from the node's stream, one per input
element) and dscale / dB as exact int64 accumulators at ``de - 16`` / ``de``.
"""

from __future__ import annotations

import math

import numpy as np

from rctc.analysis.arena import align
from rctc.ir import Node, Value
from rctc.native.codegen.emit import Emit, bits_of, call_rq, emitter, i64, refuse, width, work_words
from rctc.native.codegen.emit.requant import chunk_size, round_chunks
from rctc.native.intops import NORM_CHUNK, batchnorm_train_mt_work
from rctc.native.intops_base import _ratio
from rctc.runtime.intref.core import fixed_point
from rctc.runtime.intref.norm import MU_FRAC, XFRAC


def _eps(node: Node) -> str:
    num, log2den = _ratio(float(node.attrs.get("epsilon", 1e-5)))
    return f"{i64(num)}, {log2den}"


def _int64(node: Node, *vs: Value) -> None:
    for v in vs:
        if np.dtype(v.dtype) != np.int64:
            raise refuse(node, f"writes the accumulator {v.name!r} as {np.dtype(v.dtype)}, not int64")


def _bcs(node: Node, q: Value) -> tuple[int, int, int]:
    if len(q.shape) < 2:
        raise refuse(node, f"normalises a {len(q.shape)}-D input (BatchNorm needs (B, C, ...))")
    return q.shape[0], q.shape[1], math.prod(q.shape[2:])


def _rows(node: Node, q: Value) -> tuple[int, int, int]:
    """(G, N, axis) of a LayerNorm over ``axis..``."""
    axis = int(node.attrs.get("axis", -1)) % max(1, len(q.shape))
    return math.prod(q.shape[:axis]), math.prod(q.shape[axis:]), axis


def _per(node: Node, v: Value, shape: tuple[int, ...], what: str) -> None:
    if math.prod(v.shape) != math.prod(shape):
        raise refuse(node, f"has a {what} of shape {tuple(v.shape)} for a normalised shape {shape}")


@emitter("IntBatchNormalization")
def int_batch_norm(node: Node, cx: Emit) -> list[str]:
    """intref.norm.batchnorm_train (the training step's mode): y, and the running statistics
    updated by the batch's as 16-bit integer state."""
    q, e, gq, ge, bq, be, mq, me, vq, ve = node.inputs
    y, y_e, mq_new, me_new, vq_new, ve_new = node.outputs
    b, c, s = _bcs(node, q)
    bits = bits_of(node, y)
    for v in (gq, bq, mq, vq):
        _per(node, v, (c,), "per-channel operand")
    for v in (mq, vq, mq_new, vq_new):
        if np.dtype(v.dtype) != np.int16:
            raise refuse(node, f"keeps the running statistic {v.name!r} as {np.dtype(v.dtype)}, not int16")
    mu = fixed_point(float(node.attrs.get("momentum", 0.9)), MU_FRAC)
    host = bool(getattr(cx, "tasks", False))  # the host step: threads, SIMD loops or tables
    lines, _ = work_words(node, cx, batchnorm_train_mt_work(c, bits) if host else 9 * c + NORM_CHUNK, 0)
    lines += ["int rme = 0, rve = 0;"]
    head = f"rctc_iq_batchnorm_train_mt({cx.threads}, " if host else "rctc_iq_batchnorm_train("
    call = (f"{head}{b}, {c}, {s}, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, "
            f"{cx.ptr(gq)}, {width(gq)}, {cx.scalar(ge)}, {cx.ptr(bq)}, {width(bq)}, {cx.scalar(be)}, {cx.ptr(mq)}, "
            f"{cx.scalar(me)}, {cx.ptr(vq)}, {cx.scalar(ve)}, {_eps(node)}, {i64(mu)}, {bits}, work, {cx.ptr(y)}, "
            f"&e_out, {cx.ptr(mq_new)}, &rme, {cx.ptr(vq_new)}, &rve")
    return [*lines, "int e_out = 0;", f"int rc = {call});", "if (rc != 0) return rc;",
            f"{cx.scalar(y_e)} = e_out;", f"{cx.scalar(me_new)} = rme;", f"{cx.scalar(ve_new)} = rve;"]


def _backward(node: Node, cx: Emit, kernel: str, dims: str, n: int, work: int, ch: tuple[int, ...]) -> list[str]:
    """The shared call of rctc_iq_batchnorm_backward / rctc_iq_layernorm_backward."""
    dq, de, q, e, gq, ge = node.inputs
    dx, dx_e, dg, dg_e, db, db_e = node.outputs
    bits = bits_of(node, dx)
    if tuple(dq.shape) != tuple(q.shape):
        raise refuse(node, f"has an error of shape {tuple(dq.shape)} for an input of {tuple(q.shape)}")
    _int64(node, dg, db)
    for v in (gq, dg, db):
        _per(node, v, ch, "per-channel value")
    lines, rand = work_words(node, cx, work, n)
    call = (f"{kernel}({dims}, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {cx.ptr(gq)}, {width(gq)}, "
            f"{cx.scalar(ge)}, {cx.ptr(dq)}, {width(dq)}, {cx.scalar(de)}, {_eps(node)}, {bits}, {rand}, work, "
            f"{cx.ptr(dx)}, &e_out, {cx.ptr(dg)}, {cx.ptr(db)}")
    return [*lines, "int e_out = 0;", f"int rc = {call});", "if (rc != 0) return rc;",
            f"{cx.scalar(dx_e)} = e_out;", f"{cx.scalar(dg_e)} = {cx.scalar(de)} - {XFRAC};",
            f"{cx.scalar(db_e)} = {cx.scalar(de)};"]


@emitter("IntBatchNormGrad")
def int_batch_norm_grad(node: Node, cx: Emit) -> list[str]:
    """intref.norm.batchnorm_backward from the forward input (xhat recomputed), in parts: the
    plan (per-channel scalars, dgamma, dbeta, the accumulator's exact max), then dx's
    accumulator a chunk of elements at a time (rctc_iq_batchnorm_backward_acc), rounded as the
    whole kernel rounds it (requant.round_chunks): the scratch is the plan and one chunk."""
    dq, de, q, e, gq, ge = node.inputs
    dx, dx_e, dg, dg_e, db, db_e = node.outputs
    b, c, s = _bcs(node, q)
    if getattr(cx, "tasks", False):  # the host step: the whole kernel, threads and AVX-512 loops
        t = b * c * s
        return _backward(node, cx, "rctc_iq_batchnorm_backward_mt", f"{cx.threads}, {b}, {c}, {s}", t, t + 10 * c,
                         (c,))
    bits = bits_of(node, dx)
    if tuple(dq.shape) != tuple(q.shape):
        raise refuse(node, f"has an error of shape {tuple(dq.shape)} for an input of {tuple(q.shape)}")
    _int64(node, dg, db)
    for v in (gq, dg, db):
        _per(node, v, (c,), "per-channel value")
    dims, qa, da = f"{b}, {c}, {s}", f"{cx.ptr(q)}, {width(q)}", f"{cx.ptr(dq)}, {width(dq)}"
    plan = 9 * c

    def fill(i0: str, n: str, w: str) -> list[str]:
        return [f"rctc_iq_batchnorm_backward_acc({dims}, {qa}, {da}, plan, {i0}, {n}, {w});"]

    lines = [f"int64_t *plan = (int64_t *){cx.scratch(8 * plan)};", "int off = 0;", "uint64_t amax = 0u;",
             f"int rc = rctc_iq_batchnorm_backward_plan({dims}, {qa}, {cx.scalar(e)}, {cx.ptr(gq)}, {width(gq)}, "
             f"{da}, {_eps(node)}, plan, &off, &amax, {cx.ptr(dg)}, {cx.ptr(db)}, NULL);", "if (rc != 0) return rc;"]
    e_acc = f"{cx.scalar(de)} + {cx.scalar(ge)} - {cx.scalar(e)} + off"
    lines += round_chunks(node, cx, b * c * s, bits, chunk_size(cx), fill, e_acc, offset=align(8 * plan),
                          amax="amax")
    return lines + [f"{cx.scalar(dg_e)} = {cx.scalar(de)} - {XFRAC};", f"{cx.scalar(db_e)} = {cx.scalar(de)};"]


@emitter("IntLayerNormalization")
def int_layer_norm(node: Node, cx: Emit) -> list[str]:
    """intref.norm.layernorm over ``axis..``: gamma / beta of the normalised shape."""
    q, e, gq, ge, bq, be = node.inputs
    y, y_e = node.outputs
    g, n, axis = _rows(node, q)
    bits = bits_of(node, y)
    for v in (gq, bq):
        _per(node, v, tuple(q.shape[axis:]), "scale or bias")
    lines, _ = work_words(node, cx, 2 * g * n + 4 * g, 0)
    # the host step: the rows split over threads (the same bits); a device: the 1-thread entry
    head = f"rctc_iq_layernorm_mt({cx.threads}, " if getattr(cx, "tasks", False) else "rctc_iq_layernorm("
    return lines + call_rq(f"{head}{g}, {n}, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {cx.ptr(gq)}, "
                           f"{width(gq)}, {cx.scalar(ge)}, {cx.ptr(bq)}, {width(bq)}, {cx.scalar(be)}, {_eps(node)}, "
                           f"{bits}, work, {cx.ptr(y)}", cx.scalar(y_e))


@emitter("IntLayerNormGrad")
def int_layer_norm_grad(node: Node, cx: Emit) -> list[str]:
    """intref.norm.layernorm_backward: g = dy gamma at 16 bits first, then BatchNorm's dx."""
    q = node.inputs[2]
    g, n, axis = _rows(node, q)
    if getattr(cx, "tasks", False):  # the host step: the passes split over threads (the same bits)
        return _backward(node, cx, "rctc_iq_layernorm_backward_mt", f"{cx.threads}, {g}, {n}", g * n,
                         5 * g * n + 8 * g, tuple(q.shape[axis:]))
    return _backward(node, cx, "rctc_iq_layernorm_backward", f"{g}, {n}", g * n, 5 * g * n + 8 * g,
                     tuple(q.shape[axis:]))

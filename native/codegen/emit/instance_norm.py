"""C emitters of IntInstanceNormalization / IntInstanceNormGrad (intref.instnorm): BatchNorm's
kernels (rctc_iq_batchnorm_train / _backward) on the (1, B*C, S) view with gamma / beta tiled
over the batch, the identity intref.instnorm is (tests/runtime/intref/test_intref_instnorm.py
checks it bit for bit); the running statistics of that call are scratch and discarded, and the
backward's per-(sample, channel) dgamma / dbeta are summed over the batch (exact int64).

Needs: (B, C, spatial...) C-contiguous inputs; per-channel gamma / beta. Leaves: the numpy
kernels' bits; the backward's stochastic words one per input element (the node's stream).
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node, Value
from rctc.native.codegen.emit import Emit, bits_of, ctype, emitter, refuse, width, work_words
from rctc.native.codegen.emit.norm import _eps
from rctc.native.intops import NORM_CHUNK
from rctc.runtime.intref.norm import XFRAC


def _bcs(node: Node, q: Value, per: tuple[Value, ...]) -> tuple[int, int, int]:
    if len(q.shape) < 3:
        raise refuse(node, f"normalises a {len(q.shape)}-D input (InstanceNorm needs (B, C, spatial...))")
    b, c, s = q.shape[0], q.shape[1], math.prod(q.shape[2:])
    for v in per:
        if math.prod(v.shape) != c:
            raise refuse(node, f"has a per-channel value of shape {tuple(v.shape)} for {c} channels")
    return b, c, s


def _tile(dst: str, src: Value, cx: Emit, b: int, c: int) -> str:
    return (f"{{ const {ctype(src)} *p = {cx.ptr(src)}; for (size_t i = 0; i < {b * c}u; i++) "
            f"{dst}[i] = (int64_t)p[i % {c}u]; }}")


@emitter("IntInstanceNormalization")
def int_instance_norm(node: Node, cx: Emit) -> list[str]:
    q, e, gq, ge, bq, be = node.inputs
    y, y_e = node.outputs
    b, c, s = _bcs(node, q, (gq, bq))
    bits = bits_of(node, y)
    g = b * c
    kw = 9 * g + NORM_CHUNK  # rctc_iq_batchnorm_train's work
    lines, _ = work_words(node, cx, kw + 3 * g, 0)
    lines += [f"int64_t *gt = work + {kw}u, *bt = gt + {g}u;",
              f"int16_t *st = (int16_t *)(bt + {g}u);",  # running mean / var in and out: 4 * g int16
              f"for (size_t i = 0; i < {2 * g}u; i++) st[i] = 0;",
              _tile("gt", gq, cx, b, c), _tile("bt", bq, cx, b, c), "int rme = 0, rve = 0;"]
    call = (f"rctc_iq_batchnorm_train(1, {g}, {s}, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, gt, 8, {cx.scalar(ge)}, "
            f"bt, 8, {cx.scalar(be)}, st, 0, st + {g}u, 0, {_eps(node)}, INT64_C(0), {bits}, work, {cx.ptr(y)}, "
            f"&e_out, st + {2 * g}u, &rme, st + {3 * g}u, &rve")
    return [*lines, "int e_out = 0;", f"int rc = {call});", "if (rc != 0) return rc;", "(void)rme; (void)rve;",
            f"{cx.scalar(y_e)} = e_out;"]


@emitter("IntInstanceNormGrad")
def int_instance_norm_grad(node: Node, cx: Emit) -> list[str]:
    dq, de, q, e, gq, ge = node.inputs
    dx, dx_e, dg, dg_e, db, db_e = node.outputs
    b, c, s = _bcs(node, q, (gq, dg, db))
    if tuple(dq.shape) != tuple(q.shape):
        raise refuse(node, f"has an error of shape {tuple(dq.shape)} for an input of {tuple(q.shape)}")
    for v in (dg, db):
        if np.dtype(v.dtype) != np.int64:
            raise refuse(node, f"writes the accumulator {v.name!r} as {np.dtype(v.dtype)}, not int64")
    bits = bits_of(node, dx)
    g, t = b * c, b * c * s
    kw = 9 * g + t  # rctc_iq_batchnorm_backward's work: the plan and the accumulator
    lines, rand = work_words(node, cx, kw + 3 * g, t)
    lines += [f"int64_t *gt = work + {kw}u, *dgt = gt + {g}u, *dbt = dgt + {g}u;", _tile("gt", gq, cx, b, c)]
    call = (f"rctc_iq_batchnorm_backward(1, {g}, {s}, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, gt, 8, "
            f"{cx.scalar(ge)}, {cx.ptr(dq)}, {width(dq)}, {cx.scalar(de)}, {_eps(node)}, {bits}, {rand}, work, "
            f"{cx.ptr(dx)}, &e_out, dgt, dbt")
    return [*lines, "int e_out = 0;", f"int rc = {call});", "if (rc != 0) return rc;",
            f"int64_t *dg = {cx.ptr(dg)}, *db = {cx.ptr(db)};",
            f"for (size_t k = 0; k < {c}u; k++) {{ dg[k] = 0; db[k] = 0; }}",
            f"for (size_t i = 0; i < {g}u; i++) {{ dg[i % {c}u] += dgt[i]; db[i % {c}u] += dbt[i]; }}",
            f"{cx.scalar(dx_e)} = e_out;", f"{cx.scalar(dg_e)} = {cx.scalar(de)} - {XFRAC};",
            f"{cx.scalar(db_e)} = {cx.scalar(de)};"]

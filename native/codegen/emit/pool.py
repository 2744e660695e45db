"""C emitters of the integer pools: IntMaxPool and IntMaxPoolGrad (rctc_iq_maxpool2d*,
iq_maxpool.c), IntGlobalAveragePool and IntGlobalAveragePoolGrad (rctc_iq_reduce_mean*,
iq_reduce_mean.c: intref.pool.global_avgpool is reduce_mean over the spatial axes).

Needs: NCHW integer tensors; the window attrs the numpy kernel reads (kernel_shape, strides,
pads; floor output size). Leaves: the twins' results (work and random words in scratch: int64
work first, then one uint32 word per rounded element, draw 0 of the node's stream).
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node, Value
from rctc.native.codegen.emit import Emit, align, emitter, numel, refuse, width
from rctc.native.codegen.emit.requant import chunk_size, round_chunks
from rctc.runtime.intref.pool import RECIP_FRAC


def _pool(node: Node, x: Value, y: Value) -> str:
    """``static const rctc_iq_pool p`` for the window of ``node`` from ``x`` to ``y``."""
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise refuse(node, f"pools a {len(x.shape)}-D tensor (only NCHW is mapped)")
    kh, kw = (int(v) for v in node.attrs["kernel_shape"])
    sh, sw = (int(v) for v in (node.attrs.get("strides") or (1, 1)))
    pt, pl, pb, pr = (int(v) for v in (node.attrs.get("pads") or (0, 0, 0, 0)))
    n, c, h, w = x.shape
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    if tuple(y.shape) != (n, c, oh, ow):
        raise refuse(node, f"pools {x.shape} to {y.shape}, not the floor-size {(n, c, oh, ow)}")
    return f"static const rctc_iq_pool p = {{{n}, {c}, {h}, {w}, {kh}, {kw}, {sh}, {sw}, {pt}, {pl}, {pb}, {pr}, " \
           f"{oh}, {ow}}};"


def _storage(node: Node, out: Value) -> int:
    """The node's ``bits``, checked against its output's storage (int8 to 8 bits, ...)."""
    bits = int(node.attrs.get("bits", 8))
    if width(out) != (1 if bits <= 8 else 2 if bits <= 16 else 4):
        raise refuse(node, f"rounds to {bits} bits into {np.dtype(out.dtype)} storage")
    return bits


def _rounded(node: Node, cx: Emit, n_work: int, n_rand: int) -> tuple[list[str], str]:
    """Scratch ``work`` (``n_work`` int64) and, for a stochastic rounding, ``r`` (``n_rand`` words)."""
    lines = [f"int64_t *work = (int64_t *){cx.scratch(8 * n_work)};", "int e_out = 0;"]
    if node.attrs.get("rounding", "stochastic") == "nearest":
        return lines, "NULL"
    lines += [f"uint32_t *r = (uint32_t *){cx.scratch(4 * n_rand, align(8 * n_work))};",
              f"rctc_random_words_mt({cx.threads}, seed, step, {cx.node_id(node)}u, 0u, {n_rand}u, r);"]
    return lines, "r"


@emitter("IntMaxPool")
def int_max_pool(node: Node, cx: Emit) -> list[str]:
    q, e = node.inputs
    y, y_e = node.outputs
    if np.dtype(y.dtype) != np.dtype(q.dtype):
        raise refuse(node, "changes the dtype")
    return [_pool(node, q, y), f"rctc_iq_maxpool2d(&p, {cx.ptr(q)}, {width(q)}, {cx.ptr(y)}, {cx.threads});",
            f"{cx.scalar(y_e)} = {cx.scalar(e)};"]


@emitter("IntMaxPoolGrad")
def int_max_pool_grad(node: Node, cx: Emit) -> list[str]:
    dq, de, q, _e = node.inputs
    dx, dx_e = node.outputs
    bits = _storage(node, dx)
    lines, rand = _rounded(node, cx, numel(q), numel(q))
    return [_pool(node, q, dq), *lines,
            f"int rc = rctc_iq_maxpool2d_backward(&p, {cx.ptr(q)}, {width(q)}, {cx.ptr(dq)}, {width(dq)}, "
            f"{cx.scalar(de)}, {bits}, {rand}, work, {cx.ptr(dx)}, &e_out);",
            "if (rc != 0) return rc;", f"{cx.scalar(dx_e)} = e_out;"]


def _planes(node: Node, x: Value) -> tuple[int, int]:
    if len(x.shape) < 3:
        raise refuse(node, f"averages a {len(x.shape)}-D tensor (N, C and spatial axes are needed)")
    return x.shape[0] * x.shape[1], math.prod(x.shape[2:])


@emitter("IntGlobalAveragePool")
def int_global_average_pool(node: Node, cx: Emit) -> list[str]:
    q, e = node.inputs
    y, y_e = node.outputs
    outer, red = _planes(node, q)
    if numel(y) != outer:
        raise refuse(node, f"averages {q.shape} to {y.shape}")
    bits = _storage(node, y)
    return [f"int64_t *work = (int64_t *){cx.scratch(8 * outer)};", "int e_out = 0;",
            f"int rc = rctc_iq_reduce_mean({outer}u, {red}u, 1u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {bits}, "
            f"work, {cx.ptr(y)}, &e_out);",
            "if (rc != 0) return rc;", f"{cx.scalar(y_e)} = e_out;"]


@emitter("IntGlobalAveragePoolGrad")
def int_global_average_pool_grad(node: Node, cx: Emit) -> list[str]:
    dq, de = node.inputs
    dx, dx_e = node.outputs
    if tuple(int(s) for s in node.attrs["input_shape"]) != tuple(dx.shape):
        raise refuse(node, f"has input_shape {node.attrs['input_shape']} but an output of shape {dx.shape}")
    outer, red = _planes(node, dx)
    if numel(dq) != outer:
        raise refuse(node, f"spreads {dq.shape} over {dx.shape}")
    bits = _storage(node, dx)
    n = numel(dx)
    if n > chunk_size(cx):
        return _gap_grad_chunked(node, cx, n, red, bits)
    lines, rand = _rounded(node, cx, n, n)
    return [*lines,
            f"int rc = rctc_iq_reduce_mean_backward({outer}u, {red}u, 1u, {cx.ptr(dq)}, {width(dq)}, "
            f"{cx.scalar(de)}, {bits}, {rand}, work, {cx.ptr(dx)}, &e_out);",
            "if (rc != 0) return rc;", f"{cx.scalar(dx_e)} = e_out;"]


def _gap_grad_chunked(node: Node, cx: Emit, n: int, red: int, bits: int) -> list[str]:
    """rctc_iq_reduce_mean_backward (inner 1) a chunk at a time: element i's accumulator is
    dy[i / red] times round(2^32 / red) (wrapping as the kernel's iq_mul), rounded as the kernel
    rounds it (requant.round_chunks), so the scratch holds one chunk, not the whole error."""
    dq, de = node.inputs
    d = cx.ptr(dq)

    def fill(i0: str, c: str, w: str) -> list[str]:
        return [f"for (size_t j = 0; j < {c}; j++) "
                f"{w}[j] = (int64_t)((uint64_t)(int64_t){d}[({i0} + j) / {red}u] * (uint64_t)rcp);"]

    return [f"const int64_t rcp = (int64_t)rctc_iq_recip_fixed({red}u, {RECIP_FRAC});",
            *round_chunks(node, cx, n, bits, chunk_size(cx), fill, f"{cx.scalar(de)} - {RECIP_FRAC}")]

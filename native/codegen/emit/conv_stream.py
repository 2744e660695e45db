"""The C of a streamed data gradient (rctc.analysis.arena.streamable): an ``IntConvGradInput``
whose accumulator the device never holds whole, and the bias-free ``Requantize`` that reads it,
emitted as one block at the Requantize.

Needs: a 2-D group-1 conv (not depthwise), an int32 / int64 accumulator, an int8 error. Leaves:
the Requantize's bits. dX's channels are independent (channel c of dX is col2im of the rows of
``W^T dY`` that belong to c), so dX is formed a block of ``cb`` input channels at a time, each
image's block exact: W^T's rows of the block (A offset by the block's first row, the same
strides), one band of dY rows at a time as the whole-image emitter does, col2im into the block.
Two passes over the blocks: the first for the accumulator's max (the shift), the second to
round each block, a chunk at a time, with the Requantize's words for those elements. The data
gradient's instructions are doubled; the scratch holds one block, one band of columns, one chunk.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rctc.ir import Node
from rctc.native.codegen.emit import Emit, ctype, refuse, sname, stochastic, width
from rctc.native.codegen.emit.conv import _int8, _limit, geometry, rows_per_tile
from rctc.native.codegen.emit.products import gemm_name
from rctc.native.codegen.emit.requant import chunk_size


def streamed_grad_input(conv: Node, rq: Node, cx: Emit) -> list[str]:
    """``rq`` (Requantize) of ``conv``'s (IntConvGradInput) accumulator, a channel block at a time."""
    dy, edy, w, ew = conv.inputs
    dx, dx_e = conv.outputs
    out, out_e = rq.outputs
    bits = int(rq.attrs["bits"])
    _int8(conv, dy, "error")
    g = geometry(conv, conv.attrs, tuple(dx.shape), tuple(w.shape), tuple(dy.shape))
    acc = sname(dx)
    if g.group != 1 or g.depthwise or acc not in ("s32", "s64"):
        raise refuse(conv, "is streamed but is not a group-1 int32 / int64 data gradient")
    item = np.dtype(dx.dtype).itemsize
    kk = g.kh * g.kw
    limit = _limit(cx)
    cb = max(1, min(g.c, limit // (item * g.hw)))  # channels of one block
    rows = min(rows_per_tile(replace(g, c=cb), item, limit), g.oh)
    chunk = chunk_size(cx)
    rand = stochastic(rq)
    block_bytes = item * cb * g.hw
    cols_bytes = item * cb * kk * rows * g.ow
    blk = cx.scratch(block_bytes)
    cols = cx.scratch(cols_bytes, _al(block_bytes))
    wbuf = cx.scratch(8 * chunk + (4 * chunk if rand else 0), _al(block_bytes) + _al(cols_bytes))
    fn = gemm_name(conv, w, dy, acc)
    t = ctype(dx)
    wo = width(out)
    lines = [f"static const rctc_conv2d g = {{{g.c}, {g.h}, {g.w}, {g.kh}, {g.kw}, {g.sh}, {g.sw}, {g.pt}, {g.pl}, "
             f"{g.dh}, {g.dw}, {g.oh}, {g.ow}}};",
             f"{t} *blk = ({t} *){blk};", f"{t} *dcols = ({t} *){cols};", f"int64_t *w = (int64_t *){wbuf};",
             *([f"uint32_t *r = (uint32_t *)(w + {chunk});"] if rand else []),
             "uint64_t m = 0u;", "int s = 0;",
             "for (int pass = 0; pass < 2; ++pass) {",
             "    if (pass) {",
             f"        s = rctc_iq_requant_shift(m, {bits}, {int(rand)});",
             "        if (s > 0 && m > ((uint64_t)1 << 62)) return RCTC_IQ_EOVERFLOW;",
             "    }",
             f"    for (int n = 0; n < {g.n}; ++n)",
             f"    for (int c0 = 0; c0 < {g.c}; c0 += {cb}) {{",
             f"        const int cn = {g.c} - c0 < {cb} ? {g.c} - c0 : {cb};",
             f"        memset(blk, 0, (size_t)cn * {item * g.hw}u);",
             f"        for (int r0 = 0; r0 < {g.oh}; r0 += {rows}) {{",
             "            rctc_conv2d tb = g;",
             "            tb.c = cn;",
             f"            tb.oh = {g.oh} - r0 < {rows} ? {g.oh} - r0 : {rows};",
             "            tb.pad_t = g.pad_t - r0 * g.stride_h;",
             f"            const int tp = tb.oh * {g.ow};",
             f"            {fn}(cn * {kk}, tp, {g.m}, {cx.ptr(w)} + (ptrdiff_t)c0 * {kk}, 1, {g.kg}, "
             f"{cx.ptr(dy)} + (ptrdiff_t)n * {g.m * g.p} + (ptrdiff_t)r0 * {g.ow}, {g.p}, 1, dcols, tp, 1, 0, "
             f"{cx.threads});",
             f"            rctc_col2im_{acc}_add(&tb, dcols, tp, blk);",
             "        }",
             f"        const size_t len = (size_t)cn * {g.hw}u, base = ((size_t)n * {g.c} + (size_t)c0) * {g.hw}u;",
             f"        for (size_t j0 = 0; j0 < len; j0 += {chunk}u) {{",
             f"            const size_t c = len - j0 < {chunk}u ? len - j0 : {chunk}u;",
             "            for (size_t j = 0; j < c; j++) w[j] = (int64_t)blk[j0 + j];",
             "            if (!pass) {",
             "                const uint64_t a = rctc_iq_absmax(c, w);",
             "                m = a > m ? a : m;",
             "                continue;",
             "            }",
             *([f"            rctc_random_words_fast(seed, step, {cx.node_id(rq)}u, (uint64_t)(base + j0), c, r);"]
               if rand else []),
             f"            rctc_iq_round_store(c, w, s, {'r' if rand else 'NULL'}, "
             f"(unsigned char *){cx.ptr(out)} + (base + j0) * {wo}u, {wo});",
             "        }",
             "    }",
             "}",
             f"{cx.scalar(dx_e)} = {cx.scalar(edy)} + {cx.scalar(ew)};",
             f"{cx.scalar(out_e)} = {cx.scalar(dx_e)} + s;"]
    return lines


def _al(n: int) -> int:
    return -(-n // 64) * 64


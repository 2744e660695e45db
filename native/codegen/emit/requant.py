"""C emitter of Requantize (intref.core.requantize; rctc_iq_requantize*).

Needs: an int32 / int64 accumulator, an optional 1-D bias. Leaves: the kernel's bits. Without a
bias, an accumulator over ``CHUNK`` elements is rounded ``CHUNK`` at a time: the shift from the
whole accumulator's max (rctc_iq_requant_shift, as the kernel), then per chunk the widening, the
chunk's words (counter-based: the words of those elements) and rctc_iq_shift_round, so the
scratch holds one chunk (int64 and words), not the whole accumulator. An int32 accumulator
without a bias whose words fit what a chunk would take is rounded in one call without a widened
copy (rctc_iq_requantize_s32); on the host step, when it rounds stochastically, the kernel draws
its words itself, a block at a time (rctc_iq_requantize_s32_words_mt: no words in scratch).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rctc.ir import Node, Value
from rctc.native.codegen.emit import (
    Emit,
    c_array,
    ctype,
    emitter,
    numel,
    refuse,
    stochastic,
    width,
    work_words,
)
from rctc.native.intops_base import broadcast_strides

MAXDIM = 8  # RCTC_IQ_MAXDIM

#: elements rounded at a time where the accumulator is larger (and has no bias)
CHUNK = 1024


@emitter("Requantize")
def requantize(node: Node, cx: Emit) -> list[str]:
    """intref.core.requantize: an int32 accumulator without a bias read as it is
    (rctc_iq_requantize_s32), any other widened to int64 in scratch (the kernel adds the bias in
    place); stochastic words from the node's Philox stream (draw 0, start 0)."""
    acc, acc_e = node.inputs[:2]
    if acc.name in getattr(cx, "streamed", ()):  # its data gradient is formed here, a block at a time
        from rctc.native.codegen.emit.conv_stream import streamed_grad_input

        return streamed_grad_input(acc.producer, node, cx)
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    bias_e = node.inputs[3] if len(node.inputs) > 3 else None
    out, out_e = node.outputs
    n, bits = numel(acc), int(node.attrs["bits"])
    width(acc)
    budget = getattr(cx, "budget", 0)
    chunk = chunk_size(cx)
    if bias is None and np.dtype(acc.dtype) == np.int32 and stochastic(node) and getattr(cx, "tasks", False):
        # the host step: the words drawn inside the kernel, a block at a time (no n-word buffer)
        return ["int e_out = 0;",
                f"int rc = rctc_iq_requantize_s32_words_mt({cx.threads}, {n}u, {cx.ptr(acc)}, {cx.scalar(acc_e)}, "
                f"{bits}, seed, step, {cx.node_id(node)}u, {cx.ptr(out)}, &e_out);",
                "if (rc != 0) return rc;", f"{cx.scalar(out_e)} = e_out;"]
    if bias is None and np.dtype(acc.dtype) == np.int32 and 4 * n <= max(12 * chunk, budget):
        # nearest, or the device step: no widened copy, only the n random words (within what a chunk would use)
        lines, rand = work_words(node, cx, 0, n)
        return lines + ["(void)work;", "int e_out = 0;",
                        f"int rc = rctc_iq_requantize_s32_mt({cx.threads}, {n}u, {cx.ptr(acc)}, {cx.scalar(acc_e)}, "
                        f"{bits}, {rand}, "
                        f"{cx.ptr(out)}, &e_out);", "if (rc != 0) return rc;", f"{cx.scalar(out_e)} = e_out;"]
    if bias is None and n > chunk:
        return _chunked(node, cx, n, bits, chunk)
    lines, rand = work_words(node, cx, n, n)
    widen = ["int64_t *w = work;", f"const {ctype(acc)} *a = {cx.ptr(acc)};",
             f"for (size_t i = 0; i < {n}u; i++) w[i] = (int64_t)a[i];"]
    if bias is not None:
        if len(bias.shape) != 1 or bias_e is None:
            raise refuse(node, f"has a {len(bias.shape)}-D bias (only a 1-D bias with its exponent is mapped)")
        nd = len(acc.shape)
        axis = 1 if int(node.attrs.get("bias_axis", -1)) == 1 and nd >= 2 else nd - 1
        if acc.shape[axis] != bias.shape[0]:
            raise refuse(node, f"broadcasts a bias of {bias.shape[0]} along an axis of {acc.shape[axis]}")
        outer, inner = math.prod(acc.shape[:axis]), math.prod(acc.shape[axis + 1:])
        general = [*widen, f"rc = rctc_iq_requantize_bias({outer}u, {bias.shape[0]}u, {inner}u, w, "
                   f"{cx.scalar(acc_e)}, {cx.ptr(bias)}, {width(bias)}, {cx.scalar(bias_e)}, {bits}, {rand}, "
                   f"{cx.ptr(out)}, &e_out);"]
        lines += ["int e_out = 0;", "int rc;"]
        if inner == 1 and nd <= MAXDIM and width(acc) <= 4:
            lines += _bias_as_add(node, cx, acc, bias, bits, rand, general)
        else:
            lines += general
    else:
        lines += [*widen, "int e_out = 0;",
                  f"int rc = rctc_iq_requantize({n}u, w, {cx.scalar(acc_e)}, {bits}, {rand}, {cx.ptr(out)}, "
                  "&e_out);"]
    lines += ["if (rc != 0) return rc;", f"{cx.scalar(out_e)} = e_out;"]
    return lines


def _bias_as_add(node: Node, cx: Emit, acc: Value, bias: Value, bits: int, rand: str, general: list[str]) -> list[str]:
    """A bias along an int32 accumulator's last axis at an exponent ``k >= 0`` above the
    accumulator's with ``k + 8 w_bias <= 61``: intref's ``requantize(acc + (bias << k))`` is then, integer for
    integer, IntAdd of the two (its alignment keeps the accumulator's exponent, shifts nothing
    out, and rounds the same sum with the same words), so rctc_iq_add_mt runs it (int32 sums
    where they fit, on the step's threads, no widened copy); otherwise ``general``."""
    acc_e, bias_e = node.inputs[1], node.inputs[3]
    dims = tuple(acc.shape)
    arrays = [c_array("int", "shp", dims), c_array("ptrdiff_t", "sa", broadcast_strides(dims, dims)),
              c_array("ptrdiff_t", "sb", broadcast_strides(dims, tuple(bias.shape)))]
    k = f"{cx.scalar(bias_e)} - {cx.scalar(acc_e)}"
    return [*arrays, f"if ({k} >= 0 && {k} <= {61 - 8 * width(bias)}) {{",
            f"    rc = rctc_iq_add_mt({cx.threads}, {len(dims)}, shp, {cx.ptr(acc)}, {width(acc)}, sa, "
            f"{cx.scalar(acc_e)}, {cx.ptr(bias)}, {width(bias)}, sb, {cx.scalar(bias_e)}, 0, {bits}, {rand}, "
            f"work, {cx.ptr(node.outputs[0])}, &e_out);",
            "} else {", *("    " + t for t in general), "}"]


def chunk_size(cx: Emit) -> int:
    """Elements a chunked rounding forms at a time: ``CHUNK``, or as many as the scratch budget
    holds (8 bytes of int64 and 4 of words an element)."""
    return max(CHUNK, getattr(cx, "budget", 0) // 12)


def round_chunks(node: Node, cx: Emit, n: int, bits: int, chunk: int, fill: Callable[[str, str, str], list[str]],
                 e_acc: str, offset: int = 0, amax: str | None = None) -> list[str]:
    """intref.core.requantize of the ``n`` accumulator values that ``fill(i0, c, w)`` writes
    (elements ``i0 .. i0 + c - 1`` into the int64 chunk ``w``), ``chunk`` at a time from scratch
    byte ``offset`` on: the shift from their max (``amax``, a C expression, when the caller knows
    it exactly; else a first pass of ``fill``), then per chunk the values again, their words
    (the node's stream, word i for element i) and rctc_iq_round_store, so the scratch holds one
    chunk (int64 and words). The output's exponent is ``e_acc`` + the shift."""
    out, out_e = node.outputs[:2]
    rand = stochastic(node)
    wo = width(out)
    base = cx.scratch(8 * chunk + (4 * chunk if rand else 0), offset)
    loop = [f"for (size_t i0 = 0; i0 < {n}u; i0 += {chunk}u) {{",
            f"    const size_t c = {n}u - i0 < {chunk}u ? {n}u - i0 : {chunk}u;"]
    lines = ["int64_t *w = (int64_t *)" + base + ";"]
    if amax is None:
        lines += ["uint64_t m = 0u;", *loop, *("    " + t for t in fill("i0", "c", "w")),
                  "    const uint64_t a = rctc_iq_absmax(c, w);", "    m = a > m ? a : m;", "}"]
        amax = "m"
    lines += [f"const int s = rctc_iq_requant_shift({amax}, {bits}, {int(rand)});",
              f"if (s > 0 && {amax} > ((uint64_t)1 << 62)) return RCTC_IQ_EOVERFLOW;"]
    if rand:
        lines.append(f"uint32_t *r = (uint32_t *)(w + {chunk});")
    return lines + [*loop, *("    " + t for t in fill("i0", "c", "w")),
                    *([f"    rctc_random_words_fast(seed, step, {cx.node_id(node)}u, (uint64_t)i0, c, r);"]
                      if rand else []),
                    f"    rctc_iq_round_store(c, w, s, {'r' if rand else 'NULL'}, "
                    f"(unsigned char *){cx.ptr(out)} + i0 * {wo}u, {wo});", "}",
                    f"{cx.scalar(out_e)} = {e_acc} + s;"]


def _chunked(node: Node, cx: Emit, n: int, bits: int, chunk: int) -> list[str]:
    """rctc_iq_requantize of a bias-free accumulator, ``chunk`` elements at a time (module docstring)."""
    acc, acc_e = node.inputs[:2]

    a = cx.ptr(acc)

    def fill(i0: str, c: str, w: str) -> list[str]:
        return [f"for (size_t i = 0; i < {c}; i++) {w}[i] = (int64_t){a}[{i0} + i];"]

    top = ["uint64_t m = 0u;", f"for (size_t i = 0; i < {n}u; i++) {{", f"    const int64_t v = (int64_t){a}[i];",
           "    const uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;", "    m = u > m ? u : m;", "}"]
    return top + round_chunks(node, cx, n, bits, chunk, fill, cx.scalar(acc_e), amax="m")

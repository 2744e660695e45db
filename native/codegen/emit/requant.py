"""C emitter of Requantize (intref.core.requantize; rctc_iq_requantize*)."""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.native.codegen.emit import Emit, ctype, emitter, numel, refuse, width, work_words


@emitter("Requantize")
def requantize(node: Node, cx: Emit) -> list[str]:
    """intref.core.requantize: an int32 accumulator without a bias read as it is
    (rctc_iq_requantize_s32), any other widened to int64 in scratch (the kernel adds the bias in
    place); stochastic words from the node's Philox stream (draw 0, start 0)."""
    acc, acc_e = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    bias_e = node.inputs[3] if len(node.inputs) > 3 else None
    out, out_e = node.outputs
    n, bits = numel(acc), int(node.attrs["bits"])
    width(acc)
    if bias is None and np.dtype(acc.dtype) == np.int32:  # the common case: no widened copy
        lines, rand = work_words(node, cx, 0, n)
        return lines + ["(void)work;", "int e_out = 0;",
                        f"int rc = rctc_iq_requantize_s32({n}u, {cx.ptr(acc)}, {cx.scalar(acc_e)}, {bits}, {rand}, "
                        f"{cx.ptr(out)}, &e_out);", "if (rc != 0) return rc;", f"{cx.scalar(out_e)} = e_out;"]
    lines, rand = work_words(node, cx, n, n)
    lines += ["int64_t *w = work;", f"const {ctype(acc)} *a = {cx.ptr(acc)};",
              f"for (size_t i = 0; i < {n}u; i++) w[i] = (int64_t)a[i];", "int e_out = 0;"]
    if bias is not None:
        if len(bias.shape) != 1 or bias_e is None:
            raise refuse(node, f"has a {len(bias.shape)}-D bias (only a 1-D bias with its exponent is mapped)")
        nd = len(acc.shape)
        axis = 1 if int(node.attrs.get("bias_axis", -1)) == 1 and nd >= 2 else nd - 1
        if acc.shape[axis] != bias.shape[0]:
            raise refuse(node, f"broadcasts a bias of {bias.shape[0]} along an axis of {acc.shape[axis]}")
        outer, inner = math.prod(acc.shape[:axis]), math.prod(acc.shape[axis + 1:])
        lines.append(f"int rc = rctc_iq_requantize_bias({outer}u, {bias.shape[0]}u, {inner}u, w, "
                     f"{cx.scalar(acc_e)}, {cx.ptr(bias)}, {width(bias)}, {cx.scalar(bias_e)}, {bits}, {rand}, "
                     f"{cx.ptr(out)}, &e_out);")
    else:
        lines.append(f"int rc = rctc_iq_requantize({n}u, w, {cx.scalar(acc_e)}, {bits}, {rand}, {cx.ptr(out)}, "
                     "&e_out);")
    lines += ["if (rc != 0) return rc;", f"{cx.scalar(out_e)} = e_out;"]
    return lines

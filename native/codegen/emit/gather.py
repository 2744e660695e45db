"""C emitters of the embedding lookup and its backward rule: Gather (an integer table, e.g. an
embedding parameter, read at int64 / int32 indices) and IntGatherGrad (error rows added
exactly into an int64 accumulator of the table's shape).

Needs: C-contiguous values; indices of any integer dtype. Leaves: generated loops; negative
indices count from the end (numpy's take / add.at); an index outside ``[-n, n)`` makes the
step return RCTC_IQ_EDOMAIN (the numpy kernels raise IndexError).
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.native.codegen.emit import Emit, ctype, emitter, numel, refuse


def _index(n: int) -> list[str]:
    """``k``: index ``j`` of ``idx`` wrapped into ``[0, n)``, or the step fails."""
    return ["int64_t k = (int64_t)idx[j];",
            f"if (k < -{n} || k >= {n}) return RCTC_IQ_EDOMAIN;",
            f"if (k < 0) k += {n};"]


@emitter("Gather")
def gather(node: Node, cx: Emit) -> list[str]:
    """np.take(data, indices, axis): rows of ``inner`` elements copied per (outer, index)."""
    data, idx = node.inputs
    (out,) = node.outputs
    if not data.shape:
        raise refuse(node, "gathers from a 0-d value")
    axis = int(node.attrs.get("axis", 0)) % len(data.shape)
    if np.dtype(out.dtype) != np.dtype(data.dtype):
        raise refuse(node, "changes the dtype")
    n, ni = data.shape[axis], numel(idx)
    outer, inner = math.prod(data.shape[:axis]), math.prod(data.shape[axis + 1:])
    if numel(out) != outer * ni * inner:
        raise refuse(node, f"writes {numel(out)} elements for a take of {outer * ni * inner}")
    return [f"const {ctype(data)} *src = {cx.ptr(data)};", f"const {ctype(idx)} *idx = {cx.ptr(idx)};",
            f"{ctype(out)} *dst = {cx.ptr(out)};",
            f"for (size_t o = 0; o < {outer}u; o++)",
            f"    for (size_t j = 0; j < {ni}u; j++) {{",
            *[f"        {s}" for s in _index(n)],
            f"        memcpy(dst + (o * {ni}u + j) * {inner}u, src + (o * {n}u + (size_t)k) * {inner}u, "
            f"{inner}u * sizeof *dst);",
            "    }"]


@emitter("IntGatherGrad")
def int_gather_grad(node: Node, cx: Emit) -> list[str]:
    """Exact int64 scatter-add of the error rows into ``table_shape`` (axis 0), at the error's
    exponent (np.add.at)."""
    dq, de, idx = node.inputs
    acc, acc_e = node.outputs
    shape = tuple(int(s) for s in node.attrs["table_shape"])
    if np.dtype(acc.dtype) != np.int64 or tuple(acc.shape) != shape or not shape:
        raise refuse(node, f"accumulates into {np.dtype(acc.dtype)} {tuple(acc.shape)}, not int64 {shape}")
    n, ni, inner = shape[0], numel(idx), math.prod(shape[1:])
    if numel(dq) != ni * inner:
        raise refuse(node, f"has an error of shape {tuple(dq.shape)} for {ni} rows of {inner}")
    return [f"const {ctype(dq)} *d = {cx.ptr(dq)};", f"const {ctype(idx)} *idx = {cx.ptr(idx)};",
            f"int64_t *dst = {cx.ptr(acc)};",
            f"for (size_t i = 0; i < {numel(acc)}u; i++) dst[i] = 0;",
            f"for (size_t j = 0; j < {ni}u; j++) {{",
            *[f"    {s}" for s in _index(n)],
            f"    for (size_t i = 0; i < {inner}u; i++) dst[(size_t)k * {inner}u + i] += (int64_t)d[j * {inner}u + i];",
            "}",
            f"{cx.scalar(acc_e)} = {cx.scalar(de)};"]

"""C emitters of the exact integer reductions."""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.native.codegen.emit import Emit, ctype, emitter, loops, numel, refuse, strides


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

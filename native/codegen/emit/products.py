"""C emitters of the integer GEMM-class products (rctc_gemm_* of rctc_kernels.h)."""

from __future__ import annotations

from rctc.ir import Node
from rctc.native.codegen.emit import GEMMS, Emit, emitter, refuse, sname


def _gemm(node: Node, cx: Emit, trans_a: int, trans_b: int) -> list[str]:
    qa, ea, qb, eb = node.inputs[:4]
    acc, acc_e = node.outputs
    if len(qa.shape) != 2 or len(qb.shape) != 2:
        raise refuse(node, f"multiplies {len(qa.shape)}-D by {len(qb.shape)}-D operands (only 2-D is mapped)")
    key = (sname(qa), sname(qb), sname(acc))
    if key not in GEMMS:
        raise refuse(node, f"needs a {'x'.join(key)} GEMM, which the kernel library lacks")
    ra, ca = qa.shape
    rb, cb = qb.shape
    m, k = (ca, ra) if trans_a else (ra, ca)
    n = rb if trans_b else cb
    a_rs, a_cs = (1, ca) if trans_a else (ca, 1)
    b_rs, b_cs = (1, cb) if trans_b else (cb, 1)
    return [f"rctc_gemm_{''.join(key)}({m}, {n}, {k}, {cx.ptr(qa)}, {a_rs}, {a_cs}, {cx.ptr(qb)}, {b_rs}, "
            f"{b_cs}, {cx.ptr(acc)}, {n}, 1, 0, {cx.threads});",
            f"{cx.scalar(acc_e)} = {cx.scalar(ea)} + {cx.scalar(eb)};"]


@emitter("IntGemm")
def int_gemm(node: Node, cx: Emit) -> list[str]:
    return _gemm(node, cx, int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0)))


@emitter("IntMatMul")
def int_matmul(node: Node, cx: Emit) -> list[str]:
    return _gemm(node, cx, 0, 0)

"""C emitters of the integer GEMM-class products (rctc_gemm_* of rctc_kernels.h), and the GEMM
weight-gradient product of fused updates."""

from __future__ import annotations

from rctc.ir import Node, Value
from rctc.native.codegen.emit import GEMMS, Emit, emitter, numel, refuse, sname, weight_grad_product


def gemm_name(node: Node, a: Value, b: Value, acc: str) -> str:
    """``rctc_gemm_<a><b><acc>`` for these operands (refused when the library lacks it)."""
    key = (sname(a), sname(b), acc)
    if key not in GEMMS:
        raise refuse(node, f"needs a {'x'.join(key)} GEMM, which the kernel library lacks")
    return f"rctc_gemm_{''.join(key)}"


def _gemm_args(node: Node, cx: Emit, qa: Value, qb: Value, trans_a: int, trans_b: int) -> tuple[int, int, int, str]:
    """(m, n, k, "A, a_rs, a_cs, B, b_rs, b_cs") of op(A) op(B) for 2-D operands."""
    if len(qa.shape) != 2 or len(qb.shape) != 2:
        raise refuse(node, f"multiplies {len(qa.shape)}-D by {len(qb.shape)}-D operands (only 2-D is mapped)")
    ra, ca = qa.shape
    rb, cb = qb.shape
    m, k = (ca, ra) if trans_a else (ra, ca)
    n = rb if trans_b else cb
    a_rs, a_cs = (1, ca) if trans_a else (ca, 1)
    b_rs, b_cs = (1, cb) if trans_b else (cb, 1)
    return m, n, k, f"{cx.ptr(qa)}, {a_rs}, {a_cs}, {cx.ptr(qb)}, {b_rs}, {b_cs}"


def _gemm(node: Node, cx: Emit, trans_a: int, trans_b: int) -> list[str]:
    qa, ea, qb, eb = node.inputs[:4]
    acc, acc_e = node.outputs
    fn = gemm_name(node, qa, qb, sname(acc))
    m, n, k, ab = _gemm_args(node, cx, qa, qb, trans_a, trans_b)
    return [f"{fn}({m}, {n}, {k}, {ab}, {cx.ptr(acc)}, {n}, 1, 0, {cx.threads});",
            f"{cx.scalar(acc_e)} = {cx.scalar(ea)} + {cx.scalar(eb)};"]


@emitter("IntGemm")
def int_gemm(node: Node, cx: Emit) -> list[str]:
    return _gemm(node, cx, int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0)))


@emitter("IntMatMul")
def int_matmul(node: Node, cx: Emit) -> list[str]:
    """numpy matmul of integers: 2-D by 2-D; (..., M, K) by a 2-D (K, N) as one GEMM over the
    flattened rows; (..., M, K) by (..., K, N) with equal batch dims as one GEMM per batch slice
    (broadcast batch dims and 1-D operands are refused)."""
    qa, ea, qb, eb = node.inputs[:4]
    acc, acc_e = node.outputs
    sa, sb = tuple(qa.shape), tuple(qb.shape)
    if len(sa) == 2 and len(sb) == 2:
        return _gemm(node, cx, 0, 0)
    if len(sa) < 2 or len(sb) < 2 or (len(sb) > 2 and sa[:-2] != sb[:-2]):
        raise refuse(node, f"multiplies {sa} by {sb} (mapped: 2-D by 2-D, N-D by 2-D, equal batch dims)")
    m, k = sa[-2], sa[-1]
    if sb[-2] != k or tuple(acc.shape) != (*sa[:-1], sb[-1]):
        raise refuse(node, f"multiplies {sa} by {sb} into {tuple(acc.shape)}")
    n = sb[-1]
    fn = gemm_name(node, qa, qb, sname(acc))
    tail = f"{cx.scalar(acc_e)} = {cx.scalar(ea)} + {cx.scalar(eb)};"
    if len(sb) == 2:
        rows = numel(qa) // k
        return [f"{fn}({rows}, {n}, {k}, {cx.ptr(qa)}, {k}, 1, {cx.ptr(qb)}, {n}, 1, {cx.ptr(acc)}, {n}, 1, 0, "
                f"{cx.threads});", tail]
    batch = numel(qa) // (m * k)
    return [f"for (size_t b = 0; b < {batch}u; b++)",
            f"    {fn}({m}, {n}, {k}, {cx.ptr(qa)} + b * {m * k}u, {k}, 1, {cx.ptr(qb)} + b * {k * n}u, {n}, 1, "
            f"{cx.ptr(acc)} + b * {m * n}u, {n}, 1, 0, {cx.threads});", tail]


@weight_grad_product("IntGemm", "IntMatMul")
def gemm_weight_grad(node: Node, cx: Emit, acc: str) -> list[str]:
    """The fused update's GEMM ``op(qa) op(qb)`` (product_transA / product_transB) into ``acc``; a
    ``transpose`` of (1, 0) writes it transposed (C strides swapped)."""
    q, qa, qb = node.inputs[0], node.inputs[3], node.inputs[5]
    ta, tb = int(node.attrs.get("product_transA", 0)), int(node.attrs.get("product_transB", 0))
    m, n, k, ab = _gemm_args(node, cx, qa, qb, ta, tb)
    if m * n != numel(q):
        raise refuse(node, f"makes a {m}x{n} product for a parameter of shape {q.shape}")
    perm = [int(p) for p in node.attrs.get("transpose") or ()]
    if perm not in ([], [0, 1], [1, 0]):
        raise refuse(node, f"transposes its 2-D product by {perm}")
    c_rs, c_cs = (1, m) if perm == [1, 0] else (n, 1)
    return [f"{gemm_name(node, qa, qb, 's64')}({m}, {n}, {k}, {ab}, {acc}, {c_rs}, {c_cs}, 0, {cx.threads});"]

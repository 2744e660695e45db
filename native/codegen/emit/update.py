"""C emitters of the fused integer parameter updates (rctc_update.h)."""

from __future__ import annotations

from rctc.ir import Node
from rctc.native.codegen.emit import GEMMS, Emit, emitter, numel, refuse, sname, width


@emitter("FusedIntUpdate", step_args=(7,))
def fused_int_update(node: Node, cx: Emit) -> list[str]:
    """FusedIntUpdate (SGD, no weight decay, alpha 1): the exact int64 weight-gradient GEMM into
    scratch, then rctc_sgd_update_fused with scale ``-lr * 2^(ea + eb - e)``; the step receives
    ``lr`` as the exact pair ``lr_m * 2^lr_k`` (the float32 learning rate's mantissa), so no
    float enters the C. Words: draw 0 of the node's stream, element i for parameter element i."""
    q, e, bits, qa, ea, qb, eb, _lr = node.inputs
    (new,) = node.outputs
    if node.attrs.get("product") not in ("IntGemm", "IntMatMul") or node.attrs.get("transpose"):
        raise refuse(node, f"fuses a {node.attrs.get('product')} product (only an untransposed GEMM is mapped)")
    if float(node.attrs.get("weight_decay", 0.0)) != 0.0 or float(node.attrs.get("alpha", 1.0)) != 1.0:
        raise refuse(node, "has weight decay or alpha != 1 (not mapped yet)")
    ta, tb = int(node.attrs.get("product_transA", 0)), int(node.attrs.get("product_transB", 0))
    if len(qa.shape) != 2 or len(qb.shape) != 2:
        raise refuse(node, "multiplies operands that are not 2-D")
    m, k = (qa.shape[1], qa.shape[0]) if ta else qa.shape
    n = qb.shape[0] if tb else qb.shape[1]
    if (m * n) != numel(q):
        raise refuse(node, f"makes a {m}x{n} product for a parameter of shape {q.shape}")
    key = (sname(qa), sname(qb), "s64")
    if key not in GEMMS:
        raise refuse(node, f"needs a {'x'.join(key)} GEMM, which the kernel library lacks")
    a_rs, a_cs = (1, qa.shape[1]) if ta else (qa.shape[1], 1)
    b_rs, b_cs = (1, qb.shape[1]) if tb else (qb.shape[1], 1)
    nn = numel(q)
    stochastic = node.attrs.get("rounding", "stochastic") != "nearest"
    lines = [f"int64_t *acc = (int64_t *){cx.scratch(12 * nn)};",
             f"rctc_gemm_{''.join(key)}({m}, {n}, {k}, {cx.ptr(qa)}, {a_rs}, {a_cs}, {cx.ptr(qb)}, {b_rs}, {b_cs}, "
             f"acc, {n}, 1, 0, {cx.threads});"]
    rand = "NULL"
    if stochastic:
        lines += [f"uint32_t *r = (uint32_t *)(acc + {nn});",
                  f"rctc_random_words(seed, step, {cx.node_id(node)}u, 0u, {nn}u, r);"]
        rand = "r"
    lines += [f"int rc = rctc_sgd_update_fused({nn}u, {cx.ptr(q)}, {width(q)}, acc, -lr_m, "
              f"lr_k + {cx.scalar(ea)} + {cx.scalar(eb)} - {cx.scalar(e)}, {cx.scalar(bits)}, {rand}, "
              f"{cx.ptr(new)});",
              "if (rc != 0) return rc;"]
    return lines

"""C emitters of the fused integer parameter updates (rctc_update.h)."""

from __future__ import annotations

from rctc.ir import Node
from rctc.native.codegen.emit import WEIGHT_GRAD_PRODUCTS, Emit, emitter, numel, refuse, width


@emitter("FusedIntUpdate", step_args=(7,))
def fused_int_update(node: Node, cx: Emit) -> list[str]:
    """FusedIntUpdate (SGD, no weight decay, alpha 1): the exact int64 weight-gradient product
    (``WEIGHT_GRAD_PRODUCTS`` of the ``product`` attr) into scratch, then rctc_sgd_update_fused with
    scale ``-lr * 2^(ea + eb - e)``; the step receives ``lr`` as the exact pair ``lr_m * 2^lr_k``
    (the float32 learning rate's mantissa), so no float enters the C. Words: draw 0 of the node's
    stream, element i for parameter element i (written over the product's workspace).
    The controller's statistics go to the node's rctc_stats entry: A and S from the kernel, then
    g = rctc_bw_gavg(A, m, k, n) (rctc/bitwidth_rule.py)."""
    q, e, bits, _qa, ea, _qb, eb, _lr = node.inputs
    (new,) = node.outputs
    product = WEIGHT_GRAD_PRODUCTS.get(str(node.attrs.get("product")))
    if product is None:
        raise refuse(node, f"fuses a {node.attrs.get('product')} product (mapped: "
                     f"{', '.join(sorted(WEIGHT_GRAD_PRODUCTS))})")
    if float(node.attrs.get("weight_decay", 0.0)) != 0.0 or float(node.attrs.get("alpha", 1.0)) != 1.0:
        raise refuse(node, "has weight decay or alpha != 1 (not mapped yet)")
    nn = numel(q)
    stochastic = node.attrs.get("rounding", "stochastic") != "nearest"
    lines = [f"int64_t *acc = (int64_t *){cx.scratch(12 * nn)};", *product(node, cx, "acc")]
    rand = "NULL"
    if stochastic:
        lines += [f"uint32_t *r = (uint32_t *)(acc + {nn});",
                  f"rctc_random_words(seed, step, {cx.node_id(node)}u, 0u, {nn}u, r);"]
        rand = "r"
    lines += [f"uint64_t *st = {cx.stats(node)};",
              f"const int k = lr_k + {cx.scalar(ea)} + {cx.scalar(eb)} - {cx.scalar(e)};",
              f"int rc = rctc_sgd_update_fused({nn}u, {cx.ptr(q)}, {width(q)}, acc, -lr_m, k, {cx.scalar(bits)}, "
              f"{rand}, {cx.ptr(new)}, st);",
              "if (rc != 0) return rc;",
              f"st[2] = rctc_bw_gavg(st[0], -lr_m, k, {nn}u);"]
    return lines

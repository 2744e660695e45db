"""C emitters of the integer parameter updates that read an integer gradient (rctc_update.h).

Both end in :func:`_sgd_call`: rctc_sgd_update_fused of an int64 accumulator ``acc`` at
exponent ``ea`` with scale ``-lr * 2^(ea - e)``; the step receives ``lr`` as the exact pair
``lr_m * 2^lr_k`` (the float32 learning rate's mantissa), so no float enters the C. Words: draw 0
of the node's stream, element i for parameter element i. Weight decay and alpha != 1 are refused.
The bitwidth controller's statistics go to the node's rctc_stats entry: A and S from the kernel,
then g = rctc_bw_gavg(A, m, k, n) (rctc/bitwidth_rule.py).
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Node, Value
from rctc.native.codegen.emit import WEIGHT_GRAD_PRODUCTS, Emit, ctype, emitter, numel, refuse, width


def _plain(node: Node) -> None:
    if float(node.attrs.get("weight_decay", 0.0)) != 0.0 or float(node.attrs.get("alpha", 1.0)) != 1.0:
        raise refuse(node, "has weight decay or alpha != 1 (not mapped yet)")


def _sgd_call(node: Node, cx: Emit, acc: str, ea: str, rand_at: str) -> list[str]:
    """The update of ``node``'s parameter (inputs 0-2: q, e, bits) from ``acc`` at exponent ``ea``;
    ``rand_at`` is scratch for the random words (4 bytes per element)."""
    q, e, bits = node.inputs[:3]
    new = node.outputs[0]
    nn = numel(q)
    lines, rand = [], "NULL"
    if node.attrs.get("rounding", "stochastic") != "nearest":
        lines += [f"uint32_t *r = (uint32_t *)({rand_at});",
                  f"rctc_random_words(seed, step, {cx.node_id(node)}u, 0u, {nn}u, r);"]
        rand = "r"
    return lines + [f"uint64_t *st = {cx.stats(node)};",
                    f"const int sh = lr_k + {ea} - {cx.scalar(e)};",
                    f"int rc = rctc_sgd_update_fused({nn}u, {cx.ptr(q)}, {width(q)}, {acc}, -lr_m, sh, "
                    f"{cx.scalar(bits)}, {rand}, {cx.ptr(new)}, st);",
                    "if (rc != 0) return rc;",
                    f"st[2] = rctc_bw_gavg(st[0], -lr_m, sh, {nn}u);"]


@emitter("FusedIntUpdate", step_args=(7,))
def fused_int_update(node: Node, cx: Emit) -> list[str]:
    """FusedIntUpdate (SGD, no weight decay, alpha 1): the exact int64 weight-gradient product
    (``WEIGHT_GRAD_PRODUCTS`` of the ``product`` attr) into scratch, then the update from it at
    exponent ``ea + eb`` (:func:`_sgd_call`; the random words written over the product's workspace)."""
    q, _e, _bits, _qa, ea, _qb, eb, _lr = node.inputs
    product = WEIGHT_GRAD_PRODUCTS.get(str(node.attrs.get("product")))
    if product is None:
        raise refuse(node, f"fuses a {node.attrs.get('product')} product (mapped: "
                     f"{', '.join(sorted(WEIGHT_GRAD_PRODUCTS))})")
    _plain(node)
    nn = numel(q)
    lines = [f"int64_t *acc = (int64_t *){cx.scratch(12 * nn)};", *product(node, cx, "acc")]
    return lines + _sgd_call(node, cx, "acc", f"{cx.scalar(ea)} + {cx.scalar(eb)}", f"acc + {nn}")


def _acc_operand(node: Node, cx: Emit, gq: Value) -> tuple[list[str], str]:
    """``gq`` as an int64 array: itself, or widened into scratch (before the random words)."""
    nn = numel(gq)
    if numel(node.inputs[0]) != nn:
        raise refuse(node, f"updates a parameter of shape {node.inputs[0].shape} from a gradient of shape {gq.shape}")
    width(gq)
    if np.dtype(gq.dtype) == np.int64:
        return [f"const int64_t *acc = {cx.ptr(gq)};"], cx.scratch(4 * nn)
    return [f"int64_t *acc = (int64_t *){cx.scratch(12 * nn)};", f"const {ctype(gq)} *g = {cx.ptr(gq)};",
            f"for (size_t i = 0; i < {nn}u; i++) acc[i] = (int64_t)g[i];"], f"acc + {nn}"


@emitter("IntAccSGDUpdate", step_args=(5,))
def int_acc_sgd_update(node: Node, cx: Emit) -> list[str]:
    """IntAccSGDUpdate (no weight decay, alpha 1): the update from the accumulator ``gq * 2^ge``."""
    _plain(node)
    gq, ge = node.inputs[3], node.inputs[4]
    lines, rand_at = _acc_operand(node, cx, gq)
    return lines + _sgd_call(node, cx, "acc", cx.scalar(ge), rand_at)

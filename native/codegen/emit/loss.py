"""C emitters of the integer softmax cross-entropy loss and its gradient (iq_softmax_xent.c).

Needs: (B, C) integer logits, int64 labels and the uint8 0/1 ``sample_mask`` of an integer rct
graph. Leaves: the numpy kernels' masking (runtime/kernels/int_elementwise.py) in C: the rows the
mask keeps are gathered into scratch and the kernel runs on them alone (B = their count), the
gradient's rows are scattered back with zeros at the padded rows; no kept row gives loss 0 at
2^-16 and a zero gradient at exponent 0. A mask byte other than 0 / 1, or a kept label the
numpy kernel refuses, returns RCTC_IQ_EDOMAIN. Stochastic words: draw 0 of the node's stream,
element i for element i of the kept rows.
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Node, Value
from rctc.native.codegen.emit import Emit, ctype, emitter, refuse, width


def _layout(node: Node, q: Value, labels: Value, mask: Value) -> tuple[int, int]:
    if len(q.shape) != 2:
        raise refuse(node, f"reads logits of shape {q.shape} (only (batch, classes) is mapped)")
    if np.dtype(mask.dtype) != np.uint8 or np.dtype(labels.dtype) != np.int64:
        raise refuse(node, f"reads a {np.dtype(mask.dtype)} mask and {np.dtype(labels.dtype)} labels "
                           "(uint8 and int64 are mapped)")
    return int(q.shape[0]), int(q.shape[1])


def _align8(n: int) -> int:
    return -(-n // 8) * 8


def _gather(node: Node, cx: Emit, q: Value, labels: Value, mask: Value, extra: int, check_labels: bool) -> list[str]:
    """C declaring ``qs`` (the kept rows of q), ``ls`` (their labels), ``kept`` and ``sc`` (scratch
    past them, ``extra`` bytes): the rows the mask keeps, in order."""
    b, c = _layout(node, q, labels, mask)
    w = width(q)
    qs_bytes = _align8(b * c * w)
    base = cx.scratch(qs_bytes + 8 * b + extra)
    bad = f"m[i] > 1u || ls[kept] < 0 || ls[kept] >= {c}" if check_labels else "m[i] > 1u"
    return [f"const {ctype(q)} *q = {cx.ptr(q)};", f"const int64_t *lab = {cx.ptr(labels)};",
            f"const uint8_t *m = (const uint8_t *){cx.ptr(mask)};",
            f"{ctype(q)} *qs = ({ctype(q)} *){base};", f"int64_t *ls = (int64_t *)({base} + {qs_bytes});",
            f"unsigned char *sc = (unsigned char *)(ls + {b});",
            "int kept = 0;",
            f"for (int i = 0; i < {b}; i++) {{",
            "    if (m[i] == 0u) continue;",
            "    ls[kept] = lab[i];",
            f"    if ({bad}) return RCTC_IQ_EDOMAIN;",
            f"    memcpy(qs + (size_t)kept * {c}u, q + (size_t)i * {c}u, {c * w}u);",
            "    kept++;",
            "}"]


@emitter("IntSoftmaxCrossEntropy")
def int_softmax_cross_entropy(node: Node, cx: Emit) -> list[str]:
    """rctc_iq_softmax_cross_entropy over the kept rows (labels must lie in [0, C), as numpy asks)."""
    q, e, labels, mask = node.inputs
    loss, loss_e = node.outputs
    b, c = _layout(node, q, labels, mask)
    lines = _gather(node, cx, q, labels, mask, 16 * b * c, check_labels=True)
    return lines + ["int e_out = -16;",
                    f"{cx.scalar(loss)} = 0;",
                    "if (kept > 0) {",
                    f"    int rc = rctc_iq_softmax_cross_entropy(kept, {c}, qs, {width(q)}, {cx.scalar(e)}, ls, "
                    f"(int64_t *)sc, {cx.ptr(loss)}, &e_out);",
                    "    if (rc != 0) return rc;",
                    "}",
                    f"{cx.scalar(loss_e)} = e_out;"]


@emitter("IntSoftmaxCrossEntropyGrad")
def int_softmax_cross_entropy_grad(node: Node, cx: Emit) -> list[str]:
    """rctc_iq_softmax_cross_entropy_backward over the kept rows into the first ``kept`` rows of
    dX, then moved (last first: a kept row only moves down) to their places, padded rows zero."""
    q, e, labels, mask = node.inputs
    dx, dx_e = node.outputs
    b, c = _layout(node, q, labels, mask)
    bits, ow = int(node.attrs["bits"]), width(dx)
    stochastic = node.attrs.get("rounding", "stochastic") != "nearest"
    lines = _gather(node, cx, q, labels, mask, 16 * b * c + 4 * b * c, check_labels=False)
    rand = "NULL"
    lines += [f"{ctype(dx)} *dx = {cx.ptr(dx)};", "int e_out = 0;", "if (kept > 0) {",
              "    int64_t *work = (int64_t *)sc;"]
    if stochastic:
        lines += [f"    uint32_t *r = (uint32_t *)(work + {2 * b * c});",
                  f"    rctc_random_words_fast(seed, step, {cx.node_id(node)}u, 0u, (size_t)kept * {c}u, r);"]
        rand = "r"
    return lines + [
        f"    int rc = rctc_iq_softmax_cross_entropy_backward(kept, {c}, qs, {width(q)}, {cx.scalar(e)}, ls, {bits}, "
        f"{rand}, work, dx, &e_out);",
        "    if (rc != 0) return rc;",
        "}",
        "int k = kept;",
        f"for (int i = {b} - 1; i >= 0; i--) {{",
        f"    {ctype(dx)} *row = dx + (size_t)i * {c}u;",
        "    if (m[i] != 0u) {",
        "        k--;",
        f"        if (k != i) memmove(row, dx + (size_t)k * {c}u, {c * ow}u);",
        "    } else {",
        f"        memset(row, 0, {c * ow}u);",
        "    }",
        "}",
        f"{cx.scalar(dx_e)} = e_out;"]

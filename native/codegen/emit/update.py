"""C emitters of the integer parameter updates that read an integer gradient (rctc_update.h).

Both end in :func:`_sgd_call`: rctc_sgd_update_fused of an int64 accumulator ``acc`` at
exponent ``ea`` with scale ``-lr * 2^(ea - e)``; the step receives ``lr`` as the exact pair
``lr_m * 2^lr_k`` (the float32 learning rate's mantissa), so no float enters the C. Words: draw 0
of the node's stream, element i for parameter element i, drawn ``WORDS`` at a time (the stream is
counter-based, so the words and the result do not depend on the chunking; the scratch holds
one chunk of words, not one word per parameter element). Weight decay and alpha != 1 are refused.
The bitwidth controller's statistics go to the node's rctc_stats entry: A and S from the kernel,
then g = rctc_bw_gavg(A, m, k, n) (rctc/bitwidth_rule.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rctc.analysis.arena import align
from rctc.ir import Node, Value
from rctc.native.codegen.emit import (
    WEIGHT_GRAD_PRODUCTS,
    Emit,
    conv,
    ctype,
    emitter,
    numel,
    refuse,
    stochastic,
    width,
)


def _plain(node: Node) -> None:
    if float(node.attrs.get("weight_decay", 0.0)) != 0.0 or float(node.attrs.get("alpha", 1.0)) != 1.0:
        raise refuse(node, "has weight decay or alpha != 1 (not mapped yet)")


#: random words drawn per call of the update kernel (the scratch holds one chunk)
WORDS = 256
#: int64 gradient bytes above which a fused conv update is made a block of filters at a time
ACC_BYTES = 32768


def _acc_limit(cx: Emit) -> int:
    """Bytes of one block's int64 gradient: ``ACC_BYTES`` (twice ``cx.band`` when the generator
    was given a band), or half the generator's budget (the block's columns take the other half)."""
    band = getattr(cx, "band", None)
    return max(ACC_BYTES if band is None else 2 * band, getattr(cx, "budget", 0) // 2)


def _words_bytes(nn: int) -> int:
    return 4 * min(nn, WORDS)


def _sgd_head(node: Node, cx: Emit, ea: str, rand_at: str) -> list[str]:
    """The statistics entry, the shift and the words pointer of :func:`_sgd_call`."""
    e = node.inputs[1]
    lines = [f"uint64_t *st = {cx.stats(node)};",
             f"const int sh = lr_k + {ea} - {cx.scalar(e)};",
             "uint64_t part[2];",
             "st[0] = 0u;", "st[1] = 0u;"]
    if stochastic(node):
        lines.append(f"uint32_t *r = (uint32_t *)({rand_at});")
    return lines


def _sgd_loop(node: Node, cx: Emit, acc: str, lo: str, hi: str) -> list[str]:
    """Elements ``lo`` .. ``hi - 1`` of the update, ``WORDS`` a call, from ``acc`` (element ``lo``
    first); the chunks' A and S added to the entry (A past 2^64 refused, as the kernel does)."""
    q, _e, bits = node.inputs[:3]
    new = node.outputs[0]
    chunk = min(numel(q), WORDS)
    lines = [f"for (size_t i0 = {lo}; i0 < {hi}; i0 += {chunk}u) {{",
             f"    const size_t c = {hi} - i0 < {chunk}u ? {hi} - i0 : {chunk}u;"]
    if stochastic(node):
        lines.append(f"    rctc_random_words_fast(seed, step, {cx.node_id(node)}u, (uint64_t)i0, c, r);")
    return lines + [f"    int rc = rctc_sgd_update_fused(c, {cx.ptr(q)} + i0, {width(q)}, {acc} + (i0 - {lo}), "
                    f"-lr_m, sh, {cx.scalar(bits)}, {'r' if stochastic(node) else 'NULL'}, {cx.ptr(new)} + i0, "
                    "part);",
                    "    if (rc != 0) return rc;",
                    "    if (st[0] + part[0] < st[0]) return RCTC_IQ_EDOMAIN;",
                    "    st[0] += part[0];",
                    "    st[1] += part[1];",
                    "}"]


def _sgd_call(node: Node, cx: Emit, acc: str, ea: str, rand_at: str) -> list[str]:
    """The update of ``node``'s parameter (inputs 0-2: q, e, bits) from ``acc`` at exponent ``ea``,
    ``WORDS`` elements a call; ``rand_at`` is scratch for one chunk of random words. The chunks'
    A and S add up to the whole update's (A past 2^64 refused, as the kernel refuses it)."""
    nn = numel(node.inputs[0])
    return [*_sgd_head(node, cx, ea, rand_at), *_sgd_loop(node, cx, acc, "(size_t)0", f"{nn}u"),
            f"st[2] = rctc_bw_gavg(st[0], -lr_m, sh, {nn}u);"]


@emitter("FusedIntUpdate", step_args=(7,))
def fused_int_update(node: Node, cx: Emit) -> list[str]:
    """FusedIntUpdate (SGD, no weight decay, alpha 1): the exact int64 weight-gradient product
    (``WEIGHT_GRAD_PRODUCTS`` of the ``product`` attr) into scratch, then the update from it at
    exponent ``ea + eb`` (:func:`_sgd_call`; the random words written over the product's workspace).
    A conv product whose int64 gradient exceeds ``ACC_BYTES`` is made a block of filters at a
    time (:func:`_by_filters`)."""
    q, _e, _bits, _qa, ea, _qb, eb, _lr = node.inputs
    product = _product_of(node)
    _plain(node)
    nn = numel(q)
    ea_eb = f"{cx.scalar(ea)} + {cx.scalar(eb)}"
    if node.attrs.get("product") == "IntConvGradWeight" and 8 * nn > _acc_limit(cx):
        rows = conv.filter_rows(node)
        if rows is not None:
            return _by_filters(node, cx, ea_eb, *rows)
    base = cx.scratch(8 * nn + _words_bytes(nn))
    # the product gets the address itself, not the local: a product split over images reads it in a task function
    lines = [f"int64_t *acc = (int64_t *){base};", *product(node, cx, f"((int64_t *){base})")]
    return lines + _sgd_call(node, cx, "acc", ea_eb, f"acc + {nn}")


def _product_of(node: Node) -> Callable[..., list[str]]:
    """The emitter of the fused update's weight-gradient product (its ``product`` attr), or refused."""
    product = WEIGHT_GRAD_PRODUCTS.get(str(node.attrs.get("product")))
    if product is None:
        raise refuse(node, f"fuses a {node.attrs.get('product')} product (mapped: "
                     f"{', '.join(sorted(WEIGHT_GRAD_PRODUCTS))})")
    return product


def _fused_product(node: Node, cx: Emit) -> tuple[list[str], str]:
    """The exact int64 weight-gradient product of a fused integer-state update (inputs q, e, bits,
    qa, ea, qb, eb, ...) into scratch as ``acc``: (the lines, the exponent expression ``ea + eb``)."""
    product = _product_of(node)
    base = f"((int64_t *){cx.scratch(8 * numel(node.inputs[0]))})"  # an expression: the product may run in a task
    return [f"int64_t *acc = {base};", *product(node, cx, base)], \
        f"{cx.scalar(node.inputs[4])} + {cx.scalar(node.inputs[6])}"


def _by_filters(node: Node, cx: Emit, ea_eb: str, filters: int, per: int) -> list[str]:
    """The fused conv update a block of ``ACC_BYTES // (8 per)`` filters at a time: the block's
    exact gradient rows (its columns rebuilt per block), then its elements' updates (words and
    statistics by element index, so the blocks give the whole update's bits)."""
    nn = numel(node.inputs[0])
    block = max(1, min(filters, _acc_limit(cx) // (8 * per)))
    elems = block * per
    acc = f"(int64_t *){cx.scratch(8 * elems + _words_bytes(nn))}"
    lines = [f"int64_t *acc = {acc};", *_sgd_head(node, cx, ea_eb, f"acc + {elems}"),
             f"for (int f0 = 0; f0 < {filters}; f0 += {block}) {{",
             f"    const int fc = {filters} - f0 < {block} ? {filters} - f0 : {block};",
             "    {",
             *[f"        {s}" for s in conv.conv_weight_grad_filters(node, cx, "acc", "f0", "fc", align(8 * elems))],
             "    }",
             *[f"    {s}" for s in _sgd_loop(node, cx, "acc", f"(size_t)f0 * {per}u",
                                            f"((size_t)f0 + (size_t)fc) * {per}u")],
             "}"]
    return lines + [f"st[2] = rctc_bw_gavg(st[0], -lr_m, sh, {nn}u);"]


def _acc_operand(node: Node, cx: Emit, gq: Value) -> tuple[list[str], str]:
    """``gq`` as an int64 array: itself, or widened into scratch (before the random words)."""
    nn = numel(gq)
    if numel(node.inputs[0]) != nn:
        raise refuse(node, f"updates a parameter of shape {node.inputs[0].shape} from a gradient of shape {gq.shape}")
    width(gq)
    if np.dtype(gq.dtype) == np.int64:
        return [f"const int64_t *acc = {cx.ptr(gq)};"], cx.scratch(_words_bytes(nn))
    return [f"int64_t *acc = (int64_t *){cx.scratch(8 * nn + _words_bytes(nn))};",
            f"const {ctype(gq)} *g = {cx.ptr(gq)};",
            f"for (size_t i = 0; i < {nn}u; i++) acc[i] = (int64_t)g[i];"], f"acc + {nn}"


@emitter("IntAccSGDUpdate", step_args=(5,))
def int_acc_sgd_update(node: Node, cx: Emit) -> list[str]:
    """IntAccSGDUpdate (no weight decay, alpha 1): the update from the accumulator ``gq * 2^ge``."""
    _plain(node)
    gq, ge = node.inputs[3], node.inputs[4]
    lines, rand_at = _acc_operand(node, cx, gq)
    return lines + _sgd_call(node, cx, "acc", cx.scalar(ge), rand_at)


# ----------------------------------------------------------------------------- AdamW (integer moments)
def _adamw_call(node: Node, cx: Emit, acc: str, ge: str) -> list[str]:
    """rctc_adamw_update of ``node`` (inputs q, e, bits, <gradient>, mq, me, vq, ve, t, lr; outputs
    q', mq', me', vq', ve', t') from the int64 gradient ``acc`` at exponent ``ge``: the exponents and
    the count are copied to their outputs and updated there; the constants are the numpy kernel's
    (``node_constants``), baked into the step; words from the node's stream, draws 0 / 1 / 2."""
    from rctc.runtime.kernels.int_adamw import node_constants

    q, e, bits = node.inputs[:3]
    mq, me, vq, ve, t = node.inputs[-6:-1]
    q2, mq2, me2, vq2, ve2, t2 = node.outputs
    for v in (mq, vq, mq2, vq2):
        if np.dtype(v.dtype) != np.int32:
            raise refuse(node, f"keeps moment {v.name!r} as {np.dtype(v.dtype)}, not int32")
    if np.dtype(t.dtype) != np.int64 or np.dtype(q.dtype) != np.dtype(q2.dtype):
        raise refuse(node, "has a step count that is not int64 or a parameter whose dtype changes")
    consts = f"adamw_c{cx.node_id(node)}"
    nn = numel(q)
    values = ", ".join(f"INT64_C({v})" for v in node_constants(node).as_list())
    return [f"static const int64_t {consts}[10] = {{{values}}};",
            f"uint64_t *st = {cx.stats(node)};",
            f"{cx.scalar(me2)} = {cx.scalar(me)};",
            f"{cx.scalar(ve2)} = {cx.scalar(ve)};",
            f"{cx.scalar(t2)} = {cx.scalar(t)};",
            f"int rc = rctc_adamw_update({nn}u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {cx.scalar(bits)}, {acc}, "
            f"{ge}, {cx.ptr(mq)}, {cx.ptr(vq)}, {cx.ptr(me2)}, {cx.ptr(ve2)}, {cx.ptr(t2)}, lr_m, lr_k, {consts}, "
            f"seed, step, {cx.node_id(node)}u, {1 if node.attrs.get('rounding', 'stochastic') != 'nearest' else 0}, "
            f"{cx.ptr(q2)}, {cx.ptr(mq2)}, {cx.ptr(vq2)}, st);",
            "if (rc != 0) return rc;",
            f"st[2] = rctc_bw_gavg(st[0], 1, -28, {nn}u);"]


@emitter("IntAccAdamWUpdate", step_args=(10,))
def int_acc_adamw_update(node: Node, cx: Emit) -> list[str]:
    """IntAccAdamWUpdate: rctc_adamw_update from the accumulator ``gq * 2^ge`` (widened to int64)."""
    gq, ge = node.inputs[3], node.inputs[4]
    lines, _ = _acc_operand(node, cx, gq)
    return lines + _adamw_call(node, cx, "acc", cx.scalar(ge))


@emitter("FusedIntAdamWUpdate", step_args=(12,))
def fused_int_adamw_update(node: Node, cx: Emit) -> list[str]:
    """FusedIntAdamWUpdate: the exact int64 weight-gradient product into scratch, then
    rctc_adamw_update from it at exponent ``ea + eb``."""
    lines, ge = _fused_product(node, cx)
    return lines + _adamw_call(node, cx, "acc", ge)


# ----------------------------------------------------------------------------- momentum (integer velocity)
def _momentum_call(node: Node, cx: Emit, acc: str, ge: str) -> list[str]:
    """rctc_momentum_update of ``node`` (inputs q, e, bits, <gradient>, vq, ve, lr; outputs q', vq',
    ve') from the int64 gradient ``acc`` at exponent ``ge``: the velocity's exponent is copied to
    its output and updated there; the constants are the numpy kernel's (``node_constants``), baked
    into the step; words from the node's stream, draws 0 / 1."""
    from rctc.runtime.kernels.int_momentum import node_constants

    q, e, bits = node.inputs[:3]
    vq, ve = node.inputs[-3:-1]
    q2, vq2, ve2 = node.outputs
    if np.dtype(q.dtype) != np.dtype(q2.dtype) or np.dtype(vq.dtype) != np.dtype(vq2.dtype):
        raise refuse(node, "has a parameter or a velocity whose dtype changes")
    consts = f"momentum_c{cx.node_id(node)}"
    nn = numel(q)
    values = ", ".join(f"INT64_C({v})" for v in node_constants(node).as_list())
    return [f"static const int64_t {consts}[5] = {{{values}}};",
            f"uint64_t *st = {cx.stats(node)};",
            f"{cx.scalar(ve2)} = {cx.scalar(ve)};",
            f"int rc = rctc_momentum_update({nn}u, {cx.ptr(q)}, {width(q)}, {cx.scalar(e)}, {cx.scalar(bits)}, "
            f"{acc}, {ge}, {cx.ptr(vq)}, {width(vq)}, {cx.ptr(ve2)}, {int(node.attrs['velocity_bits'])}, lr_m, lr_k, "
            f"{consts}, seed, step, {cx.node_id(node)}u, {1 if stochastic(node) else 0}, {cx.ptr(q2)}, "
            f"{cx.ptr(vq2)}, st);",
            "if (rc != 0) return rc;",
            f"st[2] = rctc_bw_gavg(st[0], 1, -28, {nn}u);"]


@emitter("IntAccMomentumUpdate", step_args=(7,))
def int_acc_momentum_update(node: Node, cx: Emit) -> list[str]:
    """IntAccMomentumUpdate: rctc_momentum_update from the accumulator ``gq * 2^ge`` (widened to int64)."""
    gq, ge = node.inputs[3], node.inputs[4]
    lines, _ = _acc_operand(node, cx, gq)
    return lines + _momentum_call(node, cx, "acc", cx.scalar(ge))


@emitter("FusedIntMomentumUpdate", step_args=(9,))
def fused_int_momentum_update(node: Node, cx: Emit) -> list[str]:
    """FusedIntMomentumUpdate: the exact int64 weight-gradient product into scratch, then
    rctc_momentum_update from it at exponent ``ea + eb``."""
    lines, ge = _fused_product(node, cx)
    return lines + _momentum_call(node, cx, "acc", ge)

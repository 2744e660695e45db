"""Integer SGD updates of rct mode: IntSGDUpdate, FusedIntUpdate, IntAccSGDUpdate (the momentum
updates are in :mod:`rctc.runtime.kernels.int_momentum`, AdamW's in ``int_adamw``).

The update of parameter q (value q * 2^e, current bitwidth b) is, in units of its last bit,
``u = -lr * (g + wd * w) / 2^e``; ``q <- clip(q + SR(u), -(2^(b-1)-1), 2^(b-1)-1)``. Each
kernel records the bitwidth controller's integer statistic (rctc/bitwidth_rule.py:
``ctx.stats[STATS_KEY][param] = UpdateStat(g, s, n)``, g exact from the integer accumulator
where ``u = acc * scale``, else from the float sum of |u|), and for logs Gavg = mean |u| and
the saturated fraction (``ctx.stats["gavg"]`` / ``["saturation"]``). An update of an integer
gradient ``acc * 2^ea`` (the fused updates' exact product, or the IntAcc* updates' accumulator)
forms ``u`` by :func:`_acc_sgd` (in float64 from the exact scale ``-lr * alpha * 2^(ea - e)``;
its Gavg exact from ``acc`` without weight decay).

Randomness (docs/rng.md): the stochastic rounding of ``u`` takes element ``i``'s noise from word
``i`` of the node's stream (``ctx.words``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from rctc.bitwidth_rule import (
    STATS_KEY,
    UpdateStat,
    abs_sum,
    gavg_of_float_sum,
    gavg_of_scale,
    mean_abs_update,
)
from rctc.ir import Node
from rctc.runtime.kernels._im2col import cached_plan
from rctc.runtime.kernels.int_products import INT_PRODUCTS
from rctc.runtime.kernels.quant_ops import stochastic_floor
from rctc.runtime.kernels.registry import KernelContext, register


def _pow2(e: int) -> float:
    """``2.0 ** e`` as a Python float, as ``np.ldexp(1.0, e)`` gives it (inf past the float64 range)."""
    try:
        return math.ldexp(1.0, e)
    except OverflowError:
        return math.inf


def _apply(ctx: KernelContext, node: Node, q: np.ndarray, bits: int, u: np.ndarray, draw: int = 0,
           acc: np.ndarray | None = None, scale: float = 0.0) -> np.ndarray:
    """``clip(q + SR(u))`` in q's dtype, plus the controller statistics (:func:`_record`); ``acc``
    given: ``u`` is ``acc * scale`` (float64, ``acc`` an integer array), and Gavg is exact from it.

    The sum is formed in float64: ``q`` and the rounded ``u`` are integers, so it is exact while
    below 2^53, and anything larger lies far outside ``[-qmax, qmax]`` and clips to the bound.
    Stochastic rounding is :func:`~rctc.runtime.kernels.quant_ops.round_array`'s
    ``floor(u) + (r < frac(u))`` (:func:`~rctc.runtime.kernels.quant_ops.stochastic_floor`), added
    to ``q`` term by term: ``q + floor(u)
    + up`` equals ``q + (floor(u) + up)`` (``up`` is 0 wherever ``floor(u)`` is too large for the
    sum in u's dtype to be exact: such a ``u`` has no fraction).
    """
    qmax = float((1 << (bits - 1)) - 1)
    if node.attrs.get("rounding", "stochastic") == "nearest":
        new = np.add(q, np.rint(u), dtype=np.float64)
    else:
        fl, up = stochastic_floor(u, ctx.words(node, u.shape, draw=draw))
        new = np.add(q, fl, dtype=np.float64)
        new += up
    new = np.asarray(new)  # a 0-d parameter (a scalar bias) gives numpy scalars above
    np.minimum(new, qmax, out=new)
    np.maximum(new, -qmax, out=new)
    _record(ctx, node, u, new, qmax, acc, scale)
    return new.astype(q.dtype)


def _record(ctx: KernelContext, node: Node, u: np.ndarray, new: np.ndarray, qmax: float,
            acc: np.ndarray | None, scale: float) -> None:
    """The update's statistics in ``ctx.stats`` (rctc/bitwidth_rule.py defines g and s)."""
    n = u.size
    s = int(np.count_nonzero(np.abs(new) == qmax))
    if acc is not None:
        a = abs_sum(acc)
        stat, gavg = UpdateStat(gavg_of_scale(a, scale, n), s, n), mean_abs_update(a, scale, n)
    else:
        total = float(np.add.reduce(np.abs(u), axis=None))
        stat, gavg = UpdateStat(gavg_of_float_sum(total, n), s, n), total / n if n else 0.0
    record_stats(ctx, str(node.meta.get("param", node.name)), stat, gavg)


def record_stats(ctx: KernelContext, param: str, stat: UpdateStat, gavg: float) -> None:
    """One update's statistics in ``ctx.stats``: the controller's ``UpdateStat`` and, for the step
    log, the float Gavg and the saturated fraction (every backend records them through here)."""
    record_stats_rows(ctx, ((param, stat, gavg),))


def record_stats_rows(ctx: KernelContext, rows: Iterable[tuple[str, UpdateStat, float]]) -> None:
    """:func:`record_stats` of several updates ``(param, stat, gavg)``, in their order."""
    stats = ctx.stats
    upd, gav, sat = stats.setdefault(STATS_KEY, {}), stats.setdefault("gavg", {}), stats.setdefault("saturation", {})
    for param, stat, gavg in rows:
        upd[param] = stat
        gav[param] = gavg
        sat[param] = stat.s / stat.n if stat.n else 0.0


def _decayed(g: np.ndarray, q: np.ndarray, e: int, wd: float) -> np.ndarray:
    if wd == 0.0:
        return g
    return g + np.float32(wd * _pow2(e)) * q.astype(np.float32)


@register("IntSGDUpdate")
def int_sgd_update(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray, g: np.ndarray,
                   lr: np.ndarray) -> np.ndarray:
    ev = int(e)
    geff = _decayed(g, q, ev, float(node.attrs.get("weight_decay", 0.0)))
    # the cast to float32 happens inside the multiply (the same values as astype, then multiply)
    u = np.multiply(geff, np.float32(-float(lr) * _pow2(-ev)), dtype=np.float32)
    return _apply(ctx, node, q, int(bits), u)


def _product(node: Node, qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """The exact integer weight-gradient product of a fused update, in the parameter's layout."""
    attrs = cached_plan(node, None, lambda: {k[len("product_"):]: v for k, v in node.attrs.items()
                                              if k.startswith("product_")})
    # the product's own geometry cache is keyed by the attrs dict (one per node, kept alive above)
    acc = INT_PRODUCTS[node.attrs["product"]](qa, qb, attrs, np.int64, attrs)
    perm = node.attrs.get("transpose") or None
    return acc.transpose(perm) if perm else acc


def acc_scale(lr: float, alpha: float, shift: int) -> float:
    """The float64 factor of an update from an integer gradient: ``u = acc * -lr * alpha * 2^shift``."""
    return -lr * alpha * _pow2(shift)


def _acc_sgd(ctx: KernelContext, node: Node, q: np.ndarray, e: int, bits: int, acc: np.ndarray, ea: int,
             lr: float) -> np.ndarray:
    """SGD from an integer gradient ``alpha * acc * 2^ea``: ``u = acc * (-lr * alpha * 2^(ea - e))`` in
    float64 (minus ``lr * wd * q`` with weight decay), then :func:`_apply`."""
    scale = acc_scale(lr, float(node.attrs.get("alpha", 1.0)), ea - e)
    u = acc.astype(np.float64)
    u *= scale
    wd = float(node.attrs.get("weight_decay", 0.0))
    if wd:  # u is no longer acc * scale: Gavg from the float sum
        u -= lr * wd * q.astype(np.float64)
    return _apply(ctx, node, q, bits, u.reshape(q.shape), acc=None if wd else acc, scale=scale)


@register("FusedIntUpdate")
def fused_int_update(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray,
                     qa: np.ndarray, ea: np.ndarray, qb: np.ndarray, eb: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """Exact integer weight-gradient product consumed directly by the update (no float gradient kept)."""
    return _acc_sgd(ctx, node, q, int(e), int(bits), _product(node, qa, qb), int(ea) + int(eb), float(lr))


@register("IntAccSGDUpdate")
def int_acc_sgd_update(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray,
                       gq: np.ndarray, ge: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """SGD from the integer gradient ``gq * 2^ge`` (a bias sum, a normalisation's dscale / dB):
    FusedIntUpdate's arithmetic with the accumulator given instead of computed."""
    return _acc_sgd(ctx, node, q, int(e), int(bits), gq, int(ge), float(lr))

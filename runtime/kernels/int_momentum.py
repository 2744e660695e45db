"""Integer momentum-SGD updates of rct mode: IntMomentumUpdate, IntAccMomentumUpdate,
FusedIntMomentumUpdate.

All three run :func:`rctc.runtime.intref.momentum.momentum_update` (docs/numerics.md "Momentum
SGD in rct mode") on the parameter's integers and the integer velocity; they differ in where the
integer gradient comes from: a float gradient rounded to 22 bits (IntMomentumUpdate,
``--elementwise float`` graphs), an integer accumulator ``gq * 2^ge`` (IntAccMomentumUpdate), or
the exact weight-gradient product formed here (FusedIntMomentumUpdate). Randomness
(docs/rng.md): the velocity and step roundings take element i's word i of draws 0 and 1 of the
node's stream. The bitwidth controller's statistic: ``A = sum |u|`` of the step on its ``2^-28``
grid (exact), ``g = gavg_of_scale(A, 2^-28, n)``, S = the clipped count (as AdamW's).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from rctc.bitwidth_rule import UpdateStat, abs_sum, gavg_of_scale, mean_abs_update
from rctc.ir import Node
from rctc.runtime.intref.adamw import FRAC
from rctc.runtime.intref.momentum import MU_BITS, MomentumConsts, momentum_update
from rctc.runtime.kernels.int_adamw import float_gradient, lr_exact, mantissa
from rctc.runtime.kernels.int_update import _product, record_stats
from rctc.runtime.kernels.registry import KernelContext, register


def constants(momentum: float, weight_decay: float, alpha: float = 1.0) -> MomentumConsts:
    """The fixed-point constants (``ValueError`` unless ``0 <= momentum <= 1``, ``weight_decay >= 0``)."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if not weight_decay >= 0.0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    mu = math.floor(Fraction(momentum) * (1 << MU_BITS) + Fraction(1, 2))
    ca, fa = mantissa(Fraction(alpha), 30)
    w, fw = mantissa(Fraction(weight_decay), 30)
    return MomentumConsts(mu, ca, fa, w, fw)


def node_constants(node: Node) -> MomentumConsts:
    """The node's constants, from its attributes as float32 (what the .rct file stores)."""
    a = node.attrs

    def f32(k: str, default: float = 0.0) -> float:
        return float(np.float32(a.get(k, default)))

    return constants(f32("momentum", 0.9), f32("weight_decay"), f32("alpha", 1.0))


def _run(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray, gq: np.ndarray, ge: int,
         vq: np.ndarray, ve: np.ndarray, lr: np.ndarray) -> tuple:
    rand = None
    if node.attrs.get("rounding", "stochastic") == "stochastic":
        rand = (ctx.words(node, q.shape, draw=0), ctx.words(node, q.shape, draw=1))
    lr_m, lr_k = lr_exact(float(lr))
    r = momentum_update(q, int(e), int(bits), gq, ge, vq, int(ve), int(node.attrs["velocity_bits"]), lr_m, lr_k,
                        node_constants(node), rand)
    n = q.size
    a, scale = abs_sum(r.u), math.ldexp(1.0, -FRAC)
    record_stats(ctx, str(node.meta.get("param", node.name)),
                 UpdateStat(gavg_of_scale(a, scale, n), r.saturated, n), mean_abs_update(a, scale, n))
    return r.q, r.vq, np.array(r.ve, np.int32)


@register("IntMomentumUpdate")
def int_momentum_update(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray,
                        g: np.ndarray, vq: np.ndarray, ve: np.ndarray, lr: np.ndarray) -> tuple:
    gq, eg = float_gradient(g, "IntMomentumUpdate")
    return _run(ctx, node, q, e, bits, gq, eg, vq, ve, lr)


@register("IntAccMomentumUpdate")
def int_acc_momentum_update(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray,
                            gq: np.ndarray, ge: np.ndarray, vq: np.ndarray, ve: np.ndarray, lr: np.ndarray) -> tuple:
    return _run(ctx, node, q, e, bits, gq, int(ge), vq, ve, lr)


@register("FusedIntMomentumUpdate")
def fused_int_momentum_update(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray,
                              qa: np.ndarray, ea: np.ndarray, qb: np.ndarray, eb: np.ndarray, vq: np.ndarray,
                              ve: np.ndarray, lr: np.ndarray) -> tuple:
    return _run(ctx, node, q, e, bits, _product(node, qa, qb), int(ea) + int(eb), vq, ve, lr)

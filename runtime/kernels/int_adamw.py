"""Integer AdamW updates of rct mode: IntAdamWUpdate, IntAccAdamWUpdate, FusedIntAdamWUpdate.

All three run :func:`rctc.runtime.intref.adamw.adamw_update` (docs/numerics.md "AdamW in rct
mode") on the parameter's integers and the integer moments; they differ in where the integer
gradient comes from: a float gradient rounded to 22 bits (IntAdamWUpdate, ``--elementwise
float`` graphs), an integer accumulator ``gq * 2^ge`` (IntAccAdamWUpdate), or the exact
weight-gradient product formed here (FusedIntAdamWUpdate). Randomness (docs/rng.md): the m, v
and step roundings take element i's word i of draws 0, 1 and 2 of the node's stream. The
bitwidth controller's statistic: ``A = sum |u|`` of the step on its ``2^-28`` grid (exact),
``g = gavg_of_scale(A, 2^-28, n)``, S = the clipped count.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from rctc.bitwidth_rule import UpdateStat, abs_sum, gavg_of_scale, mean_abs_update
from rctc.ir import Node
from rctc.runtime.intref.adamw import FRAC, G_BITS, Q30, AdamWConsts, adamw_update
from rctc.runtime.kernels.int_update import _product, record_stats
from rctc.runtime.kernels.registry import KernelContext, register


def mantissa(x: Fraction, bits: int) -> tuple[int, int]:
    """``x >= 0`` as ``(c, f)`` with ``x ~= c * 2^-f``, ``c = round(x 2^f)`` (half up) in
    ``[2^(bits-1), 2^bits]``; ``(0, 0)`` for 0."""
    if x <= 0:
        return 0, 0
    k = x.numerator.bit_length() - x.denominator.bit_length()  # floor(log2 x) is k or k - 1
    if x < Fraction(2) ** k:
        k -= 1
    f = bits - 1 - k
    return math.floor(x * Fraction(2) ** f + Fraction(1, 2)), f


def q30(b: float) -> int:
    return math.floor(Fraction(b) * Q30 + Fraction(1, 2))


def constants(beta1: float, beta2: float, eps: float, weight_decay: float, alpha: float = 1.0) -> AdamWConsts:
    """The fixed-point constants (``ValueError`` when a beta rounds to 1 at 2^-30 or eps <= 0)."""
    b1, b2 = q30(beta1), q30(beta2)
    if not (0 <= b1 < Q30 and 0 <= b2 < Q30):
        raise ValueError(f"betas {beta1}, {beta2} must round below 1 at 30 fraction bits")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    a = Fraction(alpha)
    c1, f1 = mantissa((1 - Fraction(b1, Q30)) * a, 30)
    c2, f2 = mantissa((1 - Fraction(b2, Q30)) * a * a, 17)
    w, fw = mantissa(Fraction(weight_decay), 30)
    fe = Fraction(float(eps))  # a float's exact value: the denominator is a power of two
    return AdamWConsts(b1, b2, c1, f1, c2, f2, w, fw, fe.numerator, -(fe.denominator.bit_length() - 1))


def lr_exact(lr: float) -> tuple[int, int]:
    """The float32 ``lr`` as ``(m, k)``, ``lr = m 2^k`` exactly, ``m`` odd and ``< 2^24``."""
    f = Fraction(float(np.float32(lr)))
    if f <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    k = -(f.denominator.bit_length() - 1)
    m = f.numerator
    while m % 2 == 0:  # the odd mantissa, as the native step receives it (an integer lr >= 2)
        m, k = m >> 1, k + 1
    return m, k


def node_constants(node: Node) -> AdamWConsts:
    """The node's fixed-point constants, from its attributes as float32 (ONNX attributes are
    float32 in the .rct file: a model compiled in memory computes what its saved copy does)."""
    a = node.attrs

    def f32(k: str, default: float = 0.0) -> float:
        return float(np.float32(a.get(k, default)))

    return constants(f32("beta1"), f32("beta2"), f32("epsilon"), f32("weight_decay"), f32("alpha", 1.0))


def _run(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray, gq: np.ndarray, ge: int,
         mq: np.ndarray, me: np.ndarray, vq: np.ndarray, ve: np.ndarray, t: np.ndarray, lr: np.ndarray) -> tuple:
    rand = None
    if node.attrs.get("rounding", "stochastic") == "stochastic":
        rand = tuple(ctx.words(node, q.shape, draw=d) for d in range(3))
    lr_m, lr_k = lr_exact(float(lr))
    r = adamw_update(q, int(e), int(bits), gq, ge, mq, int(me), vq, int(ve), int(t), lr_m, lr_k,
                     node_constants(node), rand)  # type: ignore[arg-type]
    n = q.size
    a, scale = abs_sum(r.u), math.ldexp(1.0, -FRAC)
    record_stats(ctx, str(node.meta.get("param", node.name)),
                 UpdateStat(gavg_of_scale(a, scale, n), r.saturated, n), mean_abs_update(a, scale, n))
    return (r.q, r.mq.astype(mq.dtype), np.array(r.me, np.int32), r.vq.astype(vq.dtype), np.array(r.ve, np.int32),
            np.array(r.t, np.int64))


def float_gradient(g: np.ndarray, op: str = "IntAdamWUpdate") -> tuple[np.ndarray, int]:
    """A float gradient as ``(gq, eg)``: ``gq = rint(g 2^-eg)`` with ``max|gq| <= 2^22``."""
    g = np.asarray(g, np.float64)
    if not np.all(np.isfinite(g)):
        raise FloatingPointError(f"{op}: the gradient is not finite")
    m = float(np.max(np.abs(g))) if g.size else 0.0
    if m == 0.0:
        return np.zeros(g.shape, np.int64), 0
    eg = math.frexp(m)[1] - G_BITS  # m < 2^(eg + 22)
    return np.rint(np.ldexp(g, -eg)).astype(np.int64), eg


@register("IntAdamWUpdate")
def int_adamw_update(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray, g: np.ndarray,
                     mq: np.ndarray, me: np.ndarray, vq: np.ndarray, ve: np.ndarray, t: np.ndarray,
                     lr: np.ndarray) -> tuple:
    gq, eg = float_gradient(g)
    return _run(ctx, node, q, e, bits, gq, eg, mq, me, vq, ve, t, lr)


@register("IntAccAdamWUpdate")
def int_acc_adamw_update(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray,
                         gq: np.ndarray, ge: np.ndarray, mq: np.ndarray, me: np.ndarray, vq: np.ndarray,
                         ve: np.ndarray, t: np.ndarray, lr: np.ndarray) -> tuple:
    return _run(ctx, node, q, e, bits, gq, int(ge), mq, me, vq, ve, t, lr)


@register("FusedIntAdamWUpdate")
def fused_int_adamw_update(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bits: np.ndarray,
                           qa: np.ndarray, ea: np.ndarray, qb: np.ndarray, eb: np.ndarray, mq: np.ndarray,
                           me: np.ndarray, vq: np.ndarray, ve: np.ndarray, t: np.ndarray, lr: np.ndarray) -> tuple:
    return _run(ctx, node, q, e, bits, _product(node, qa, qb), int(ea) + int(eb), mq, me, vq, ve, t, lr)

"""AdamW on integer state (rct mode): the algorithm of docs/numerics.md "AdamW in rct mode".

Per parameter ``(q, e)`` at ``bits``: first moment ``(mq, me)`` (int32, per-tensor exponent),
second moment ``(vq, ve)`` (int32 >= 0, its own exponent), step count ``t`` (int64). Every
operation is an integer one; the float inputs (the float32 ``lr``, the float attributes)
become exact integers outside this module (``rctc.runtime.kernels.int_adamw``: ``constants``
once per node, ``lr_exact`` per step), :func:`step_scalars` once per step (Python ints).

Needs: :mod:`rctc.runtime.intref.core` (rounding shifts, align, requantize, rsqrt_fixed).
Leaves: :func:`adamw_update`, a pure function of integers and random words; the C kernel
``rctc_adamw_update`` (native/csrc/kernels/adamw_update.c) mirrors it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rctc.runtime.intref.core import absmax, align, as_int64, requantize, rsqrt_fixed, shift, shift_round

#: bits of the first moment's storage (int32), of the second's (int32, values >= 0)
M_BITS, V_BITS = 32, 32
#: magnitude bits the gradient is rounded to before the moment products
G_BITS = 22
#: fraction bits of the step below the parameter's last bit (stochastic rounding of 28 bits)
FRAC = 28
#: fraction bits of the step's quotient, and the bits the denominator is normalised to
K_Q, DEN_BITS = 14, 31
#: the saturation bound of the step on its 2^-FRAC grid (2^33 last bits: past every clip)
SAT = 1 << 61
Q30 = 1 << 30


@dataclass(frozen=True)
class AdamWConsts:
    """The compile-time integers of one AdamW update (docs/numerics.md)."""

    b1: int  # round(beta1 2^30)
    b2: int  # round(beta2 2^30)
    c1: int  # (1 - beta1) alpha = c1 2^-f1, 30 bits
    f1: int
    c2: int  # (1 - beta2) alpha^2 = c2 2^-f2, 17 bits
    f2: int
    w: int  # weight_decay = w 2^-fw, 30 bits
    fw: int
    em: int  # eps = em 2^ee exactly
    ee: int

    def as_list(self) -> list[int]:
        return [self.b1, self.b2, self.c1, self.f1, self.c2, self.f2, self.w, self.fw, self.em, self.ee]


def pow_q30(b: int, t: int) -> int:
    """``b^t`` in Q30 (``b`` in Q30) by square-and-multiply, each product rounded half up."""
    r, base, t = Q30, int(b), int(t)
    while t:
        if t & 1:
            r = (r * base + (1 << 29)) >> 30
        base = (base * base + (1 << 29)) >> 30
        t >>= 1
    return r


def _norm(x: int, bits: int) -> tuple[int, int]:
    """``x >= 0`` as ``(x', s)``, ``x ~= x' 2^s`` with ``x'`` in ``[2^(bits-1), 2^bits]``: an exact
    left shift, or a right shift rounded half up; ``(0, 0)`` for 0."""
    if x == 0:
        return 0, 0
    s = x.bit_length() - bits
    if s <= 0:
        return x << -s, s
    return (x + (1 << (s - 1))) >> s, s


@dataclass(frozen=True)
class StepScalars:
    """One step's integers: ``lr / bc1 = l 2^fl``, ``1/sqrt(bc2) = r 2^kr``, ``lr wd = lw 2^klw``."""

    l: int  # noqa: E741
    fl: int
    r: int
    kr: int
    lw: int
    klw: int


def step_scalars(c: AdamWConsts, t: int, lr_m: int, lr_k: int) -> StepScalars:
    """The bias corrections of step ``t`` (the new count, >= 1) and the lr products."""
    bc1 = Q30 - pow_q30(c.b1, t)
    bc2 = Q30 - pow_q30(c.b2, t)
    big = ((lr_m << 36) + (bc1 >> 1)) // bc1  # lr / (bc1 2^-30) = big 2^(lr_k - 6)
    l30, s = _norm(big, 30)
    mr, fr = rsqrt_fixed(bc2)  # 1/sqrt(bc2) = mr 2^-fr; 1/sqrt(bc2 2^-30) = mr 2^(15 - fr)
    r30 = (mr + 2) >> 2
    lw, slw = _norm(lr_m * c.w, 30)
    return StepScalars(l30, lr_k - 6 + s, r30, 17 - fr, lw, lr_k - c.fw + slw)


def isqrt_array(x: np.ndarray) -> np.ndarray:
    """Floor square root of an int64 array with values in ``[0, 2^62)``, elementwise: the
    digit-by-digit method of C's ``rctc_iq_isqrt`` (the integer root ``core.rsqrt_fixed`` is
    built on), vectorised."""
    v = as_int64(x).copy()
    r = np.zeros_like(v)
    bit = np.int64(1 << 62)
    while bit:
        take = v >= r + bit
        v = np.where(take, v - (r + bit), v)
        r = np.where(take, (r >> np.int64(1)) + bit, r >> np.int64(1))
        bit >>= np.int64(2)
    return r


def sat_shift(x: np.ndarray, k: int) -> np.ndarray:
    """``x 2^k``: a left shift saturating at ``+-SAT``, or a nearest rounding right shift."""
    x = as_int64(x)
    if k <= 0:
        return shift_round(x, -k)
    if k >= 61:
        return np.sign(x) * np.int64(SAT)
    lim = np.int64(SAT >> k)
    return np.clip(x, -lim, lim) << np.int64(k)


def round_div_shifted(x: np.ndarray, d: np.ndarray, k: int) -> np.ndarray:
    """``round(x 2^k / d)`` half up for ``d > 0`` (``|x| < 2^62``, ``d <= 2^31``), by long division
    so ``x 2^k`` is never formed: ``x = a d + r`` (floor), result ``a 2^k + floor((r 2^(k+1) + d) / 2d)``
    (``a 2^k`` must stay below 2^62: the caller keeps ``|x| / d < 2^(62-k)``)."""
    a = np.floor_divide(x, d)
    r = x - a * d
    return (a << np.int64(k)) + np.floor_divide((r << np.int64(k + 1)) + d, 2 * d)


def _moment(a: np.ndarray, ea: int, b: np.ndarray, eb: int, keep: int, bits: int,
            rand: np.ndarray | None) -> tuple[np.ndarray, int]:
    """``a 2^ea + b 2^eb`` requantised to ``bits``; an all-zero result keeps exponent ``keep``."""
    (a2, b2), ec = align([(a, ea), (b, eb)])
    q, e = requantize(a2 + b2, ec, bits, rand=rand)
    if not q.any():
        e = keep
    return q, e


@dataclass
class AdamWResult:
    q: np.ndarray
    mq: np.ndarray
    me: int
    vq: np.ndarray
    ve: int
    t: int
    u: np.ndarray  # the step before its rounding, on the 2^-FRAC grid (int64)
    saturated: int


def adamw_update(q: np.ndarray, e: int, bits: int, gq: np.ndarray, ge: int, mq: np.ndarray, me: int,
                 vq: np.ndarray, ve: int, t: int, lr_m: int, lr_k: int, c: AdamWConsts,
                 rand: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> AdamWResult:
    """One AdamW step of ``(q, e)`` from the integer gradient ``gq 2^ge`` (docs/numerics.md);
    ``rand`` the three uint32 word arrays (m, v, step), or None for nearest everywhere."""
    shape = q.shape
    r_m, r_v, r_q = rand if rand is not None else (None, None, None)
    g64 = as_int64(gq).reshape(shape)
    s = max(0, absmax(g64).bit_length() - G_BITS)
    g = shift_round(g64, s)
    eg = int(ge) + s
    new_mq, new_me = _moment(as_int64(mq) * c.b1, me - 30, g * c.c1, eg - c.f1, me, M_BITS, r_m)
    new_vq, new_ve = _moment(as_int64(vq) * c.b2, ve - 30, (g * g) * c.c2, 2 * eg - c.f2, ve, V_BITS, r_v)
    t_new = int(t) + 1
    sc = step_scalars(c, t_new, lr_m, lr_k)
    # denominator sqrt(v_hat) + eps at exponent ed
    v = np.maximum(as_int64(new_vq), 1)
    ev = new_ve
    if ev % 2:
        v, ev = v << np.int64(1), ev - 1
    d = isqrt_array(v << np.int64(30)) * np.int64(sc.r)  # sqrt(v) = isqrt 2^(ev/2 - 15)
    ed = ev // 2 - 15 + sc.kr
    over = c.em.bit_length() + c.ee - ed - 61
    if over > 0:
        d, ed = shift_round(d, over), ed + over
    den = d + shift(np.array(c.em, np.int64), c.ee - ed)
    kd = max(0, absmax(den).bit_length() - DEN_BITS)
    den = np.maximum(shift_round(den, kd), 1)
    ed += kd
    quot = round_div_shifted(as_int64(new_mq) * np.int64(sc.l), den, K_Q)
    u = -sat_shift(quot, sc.fl + new_me - ed - int(e) - K_Q + FRAC)
    if c.w:
        u = u - sat_shift(as_int64(q) * np.int64(sc.lw), sc.klw + FRAC)
    step = shift_round(u, FRAC, r_q)
    qmax = (1 << (int(bits) - 1)) - 1
    new = np.clip(as_int64(q) + step, -qmax, qmax)
    sat = int(np.count_nonzero(np.abs(new) == qmax))
    return AdamWResult(new.astype(q.dtype), new_mq, int(new_me), new_vq, int(new_ve), t_new, u, sat)

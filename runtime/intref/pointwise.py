"""Piecewise-linear element-wise ops: ReLU, Clip / ReLU6, LeakyReLU, HardSigmoid, HardSwish.

Needs :mod:`rctc.runtime.intref.core`. Inputs are ``(q, e)`` integer tensors; forward outputs
are ``(q, e)`` at ``bits``; backward rules take the forward input ``(q, e)`` and the error
``(dq, de)`` and return the input error ``(dq, de)`` at ``bits`` (stochastic when ``rand``).

* ReLU and Clip are exact: same exponent, no rounding. Clip's bounds ``lo, hi`` (float32
  attributes, taken as exact ratios) are quantised *inward* to the input's grid:
  ``lo_q = ceil(lo / 2^e)``, ``hi_q = floor(hi / 2^e)``, so the output is exactly the real
  clip of the input whenever a bound falls on the grid, and within one step of it otherwise.
* LeakyReLU: the slope is ``alpha_q / 2^SLOPE_FRAC`` (``alpha_q = round(alpha * 2^24)``).
* HardSigmoid ``clip(alpha x + beta, 0, 1)`` and HardSwish ``x * clip(x/6 + 1/2, 0, 1)`` are
  evaluated exactly as rationals (alpha, beta: the exact float32 values; HardSwish's 1/6
  exactly), then rounded once to ``bits`` (nearest): error ``<= 2^(e_out-1)`` plus
  the cut of the exact rational to ``HSIG_FRAC = 24`` fraction bits (floor): ``2^-24`` for
  HardSigmoid, ``2^(2e-24)`` for HardSwish (``e <= 0``).

Backward masks (PyTorch's conventions): ReLU passes where ``x > 0``; Clip where
``lo <= x <= hi``; LeakyReLU slope 1 where ``x > 0`` else alpha; HardSigmoid ``alpha`` where
``0 < alpha x + beta < 1``; HardSwish ``x/3 + 1/2`` where ``-3 < x < 3``, 1 where ``x >= 3``.
"""

from __future__ import annotations

import numpy as np

from rctc.runtime.intref.core import absmax, as_int64, exact_ratio, fixed_point, requantize

__all__ = [
    "SLOPE_FRAC",
    "clip",
    "clip_backward",
    "clip_bounds",
    "hardsigmoid",
    "hardsigmoid_backward",
    "hardswish",
    "hardswish_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "relu",
    "relu_backward",
]

SLOPE_FRAC = 24
#: fraction bits kept of HardSigmoid / HardSwish's exact rational before the final rounding
HSIG_FRAC = 24

Tensor = tuple[np.ndarray, int]


def relu(q: np.ndarray, e: int) -> Tensor:
    """``max(q, 0)`` at the same exponent: exact."""
    return np.maximum(q, q.dtype.type(0)), int(e)


def relu_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int) -> Tensor:
    """``dy`` where ``x > 0``, else 0: exact."""
    return dq * (q > 0), int(de)  # a 0 / 1 mask: the product keeps dq's dtype and values


def clip_bounds(lo: float | None, hi: float | None, e: int) -> tuple[int | None, int | None]:
    """Bounds on the grid ``2^e``, inward: ``ceil(lo / 2^e)``, ``floor(hi / 2^e)`` (exact)."""
    def on_grid(v: float, up: bool) -> int:
        n, d = exact_ratio(v)
        num, den = (n * (1 << -e), d) if e < 0 else (n, d * (1 << e))
        return -((-num) // den) if up else num // den

    return (None if lo is None else on_grid(lo, True)), (None if hi is None else on_grid(hi, False))


def clip(q: np.ndarray, e: int, lo: float | None = None, hi: float | None = None) -> Tensor:
    """Clip to ``[lo, hi]`` with the bounds of :func:`clip_bounds`: exact on the input's grid.

    ReLU6 is ``clip(q, e, 0, 6)``. The output keeps the input's dtype and exponent.
    """
    lq, hq = clip_bounds(lo, hi, int(e))
    q = np.asarray(q)
    info = np.iinfo(q.dtype) if q.dtype.kind in "iu" else None
    if info is None or (lq is not None and lq > info.max) or (hq is not None and hq < info.min):
        x = as_int64(q)  # (a bound past the whole range: the int64 clip, then the cast, as always)
        if lq is not None:
            x = np.maximum(x, lq)
        if hq is not None:
            x = np.minimum(x, hq)
        return x.astype(q.dtype), int(e)
    # in q's own dtype: a bound beyond the dtype's range clips nothing, so it is dropped
    lq = None if lq is None or lq <= info.min else lq
    hq = None if hq is None or hq >= info.max else hq
    x = q
    if lq is not None:
        x = np.maximum(x, q.dtype.type(lq))
    if hq is not None:
        x = np.minimum(x, q.dtype.type(hq))
    return (x if x is not q else q.copy()), int(e)


def clip_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, lo: float | None = None,
                  hi: float | None = None) -> Tensor:
    """``dy`` where ``lo_q <= x <= hi_q`` (inclusive), else 0: exact."""
    lq, hq = clip_bounds(lo, hi, int(e))
    keep = np.ones(q.shape, bool)
    if lq is not None:
        keep &= q >= lq
    if hq is not None:
        keep &= q <= hq
    return dq * keep, int(de)


def leaky_relu(q: np.ndarray, e: int, alpha: float = 0.01, bits: int = 8) -> Tensor:
    """``x`` for ``x >= 0``, ``alpha_q x / 2^24`` else, one nearest rounding to ``bits``.

    Accumulator ``x << 24`` / ``alpha_q * x`` at ``e - 24``, then :func:`requantize`. With
    ``alpha < 1`` and a positive maximum the shift is 24 and the positive part is exact.
    Error ``<= 2^(e_out-1) + |x| * 2^-25`` (slope rounding).
    """
    a = fixed_point(alpha, SLOPE_FRAC)
    x = as_int64(q)
    acc = np.where(x >= 0, x << np.int64(SLOPE_FRAC), x * np.int64(a))
    return requantize(acc, int(e) - SLOPE_FRAC, bits)


def leaky_relu_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, alpha: float = 0.01, bits: int = 8,
                        rand: np.ndarray | None = None) -> Tensor:
    """``dy`` where ``x > 0``, ``alpha_q dy / 2^24`` else; one rounding (stochastic with ``rand``)."""
    a = fixed_point(alpha, SLOPE_FRAC)
    d = as_int64(dq)
    acc = np.where(as_int64(q) > 0, d << np.int64(SLOPE_FRAC), d * np.int64(a))
    return requantize(acc, int(de) - SLOPE_FRAC, bits, rand=rand)


def _hsig_numerator(q: np.ndarray, e: int, alpha: float, beta: float) -> tuple[np.ndarray, int, int]:
    """``alpha x + beta = num / den`` exactly (the pre-clip HardSigmoid): ``(num, den, one)``,
    num an int64 array, den a Python int and ``one = den`` the value 1."""
    an, ad = exact_ratio(alpha)
    bn, bd = exact_ratio(beta)
    # alpha x = an * q * 2^e / ad; common denominator den = ad * bd * 2^max(-e, 0)
    sh = max(-e, 0)
    den = ad * bd * (1 << sh)
    mult, off = an * bd * (1 << (e + sh)), bn * ad * (1 << sh)
    if absmax(np.asarray(q)) * abs(mult) + abs(off) > 2**61 or den > 2**61 // (1 << HSIG_FRAC):
        raise OverflowError("hardsigmoid: the exact rational does not fit int64; use a coarser exponent")
    num = as_int64(q) * np.int64(mult) + np.int64(off)
    return num, den, den


def _cut(num: np.ndarray, den: int, e_num: int) -> tuple[np.ndarray, int]:
    """``num / den * 2^e_num`` as an int64 accumulator at ``e_num - HSIG_FRAC`` (floor)."""
    return (num << np.int64(HSIG_FRAC)) // np.int64(den), e_num - HSIG_FRAC


def hardsigmoid(q: np.ndarray, e: int, alpha: float = 0.2, beta: float = 0.5, bits: int = 8) -> Tensor:
    """``clip(alpha x + beta, 0, 1)`` evaluated exactly, cut to 2^-24, rounded to ``bits``."""
    num, den, one = _hsig_numerator(q, int(e), alpha, beta)
    num = np.clip(num, 0, one)
    acc, ea = _cut(num, den, 0)
    return requantize(acc, ea, bits)


def hardsigmoid_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, alpha: float = 0.2,
                         beta: float = 0.5, bits: int = 8, rand: np.ndarray | None = None) -> Tensor:
    """``alpha dy`` where ``0 < alpha x + beta < 1``, else 0 (alpha exact: ``an / ad``, ad = 2^k)."""
    num, _, one = _hsig_numerator(q, int(e), alpha, beta)
    an, ad = exact_ratio(alpha)
    k = ad.bit_length() - 1
    acc = np.where((num > 0) & (num < one), as_int64(dq) * np.int64(an), 0)
    return requantize(acc, int(de) - k, bits, rand=rand)


def _check_hswish(x: np.ndarray, e: int, sh: int) -> None:
    """``x * clip(x + 3, 0, 6) * 2^24`` on the grid ``2^-sh`` must fit int64."""
    if (absmax(x) << (e + sh)) * (6 << sh) >= 1 << (62 - HSIG_FRAC):
        raise OverflowError("hardswish: the exact product does not fit int64 at this exponent; requantise first")


def hardswish(q: np.ndarray, e: int, bits: int = 8) -> Tensor:
    """``x * clip(x + 3, 0, 6) / 6`` exactly (three on the grid of ``2^e``), cut to 2^-24 of
    ``2^(2e)``, then rounded to ``bits``."""
    e = int(e)
    x = as_int64(q)
    sh = max(-e, 0)
    three = 3 * (1 << sh)  # 3 at exponent -sh; x at exponent e rescaled to -sh
    _check_hswish(x, e, sh)
    xs = x << np.int64(e + sh)
    t = np.clip(xs + three, 0, 2 * three)
    num = xs * t  # value num * 2^(-2 sh) * (1/6)
    acc = (num << np.int64(HSIG_FRAC)) // np.int64(6)
    return requantize(acc, -2 * sh - HSIG_FRAC, bits)


def hardswish_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, bits: int = 8,
                       rand: np.ndarray | None = None) -> Tensor:
    """``dy * (2x + 3) / 6`` where ``-3 < x < 3``, ``dy`` where ``x >= 3``, 0 else; the slope
    cut to 2^-24 (floor), then one rounding to ``bits``."""
    e = int(e)
    sh = max(-e, 0)
    three = 3 * (1 << sh)
    _check_hswish(as_int64(q), e, sh)
    xs = as_int64(q) << np.int64(e + sh)
    slope = ((2 * xs + three) << np.int64(HSIG_FRAC)) // np.int64(6 * (1 << sh))  # at 2^-24
    slope = np.where(xs >= three, np.int64(1 << HSIG_FRAC), np.where(xs > -three, slope, 0))
    acc = as_int64(dq) * slope
    return requantize(acc, int(de) - HSIG_FRAC, bits, rand=rand)


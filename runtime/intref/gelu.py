"""Integer-only Erf and GELU (I-BERT's i-GELU) and their backward rules.

Needs :mod:`rctc.runtime.intref.core` and :mod:`rctc.runtime.intref.expo` (Q16 fixed point
and i-exp). i-erf (Kim et al. 2021): ``erf(u) ~= sgn(u) [a (min(|u|, -b) + b)^2 + 1]``,
``a = -0.2888``, ``b = -1.769``, in Q16: ``c = min(|U|, 1.769)``, ``L = sgn(U) ((A (c - B')^2
+ 2^31) >> 32) + 2^16)`` with ``A = round(a 2^16)``, ``B' = round(1.769 2^16)``. It is a good
erf only *inside GELU* (``x/2 (1 + L)`` hides its error near 0, where ``L(0+) = 0.096``).

The Erf op therefore uses Abramowitz & Stegun 7.1.26 instead: for ``u >= 0``
``erf(u) = 1 - t (a1 + t (a2 + ... + t a5)) exp(-u^2)``, ``t = 1 / (1 + p u)``, ``t`` in Q30
by one integer division, Horner in Q30 (coefficients ``round(a_i 2^30)``), ``exp`` by i-exp;
odd extension. Error ``<= 1.5e-7`` (the formula) ``+ 3.2e-3 exp(-u^2)`` (i-exp), measured 1.5e-3.

GELU ``x/2 (1 + erf(x/sqrt 2))``: ``U = round(X * round(2^16/sqrt 2) / 2^16)``, then the exact
product ``q (2^16 + L)`` at ``e - 17`` rounded once: error ``<= 2^(e_out-1) + 0.019`` (i-GELU's
own, measured 0.0182 over every Q16 input in [-8, 8]).

Backward rules use the *true* derivatives, evaluated with the A&S erf and i-exp (not the
derivative of i-erf, which is 10% off at 0 and jumps there): Erf ``2/sqrt(pi) exp(-x^2)``; GELU
``(1 + erf(x/sqrt 2))/2 + x exp(-x^2/2)/sqrt(2 pi)``; each in Q16, times ``dy``, one rounding.
"""

from __future__ import annotations

import numpy as np

from rctc.runtime.intref.core import as_int64, requantize
from rctc.runtime.intref.expo import FRAC, ONE, iexp, to_fixed

__all__ = ["erf", "erf_as", "erf_backward", "gelu", "gelu_backward", "ierf"]

ERF_A = -18927  # round(-0.2888 * 2^16)
ERF_B = 115933  # round(1.769 * 2^16)
INV_SQRT2 = 46341  # round(2^16 / sqrt 2)
TWO_OVER_SQRT_PI = 73949  # round(2 / sqrt(pi) * 2^16)
INV_SQRT_2PI = 26145  # round(2^16 / sqrt(2 pi))
_SQ_CLAMP = 16 << FRAC  # |x| beyond 16: exp(-x^2/2) is 0 in Q16; keeps X^2 below 2^41
Tensor = tuple[np.ndarray, int]


def ierf(u: np.ndarray) -> np.ndarray:
    """I-BERT's erf polynomial in Q16 for Q16 ``u`` (int64)."""
    u = as_int64(u)
    c = np.minimum(np.abs(u), np.int64(ERF_B)) - np.int64(ERF_B)
    mag = ((np.int64(ERF_A) * c * c + np.int64(1 << 31)) >> np.int64(32)) + np.int64(ONE)
    return np.sign(u) * mag


def _gauss(x: np.ndarray, half: bool) -> np.ndarray:
    """``exp(-x^2)`` (or ``exp(-x^2/2)``) in Q16 for Q16 ``x``, via i-exp."""
    xc = np.clip(x, -_SQ_CLAMP, _SQ_CLAMP)
    sq = (xc * xc + np.int64(1 << (FRAC - 1 + half))) >> np.int64(FRAC + half)
    return iexp(-sq)


AS_P = 21469  # round(0.3275911 * 2^16)
AS_A = (273621191, -305476044, 1526231383, -1560310108, 1139675401)  # round(a_i * 2^30)


def erf_as(u: np.ndarray) -> np.ndarray:
    """``erf(u)`` in Q16 for Q16 ``u`` (A&S 7.1.26 with i-exp), int64."""
    u = as_int64(u)
    a = np.minimum(np.abs(u), np.int64(_SQ_CLAMP))
    den = np.int64(ONE) + ((np.int64(AS_P) * a + np.int64(1 << 15)) >> np.int64(FRAC))
    t = (np.int64(1 << 46) + (den >> np.int64(1))) // den  # Q30
    h = np.full(u.shape, np.int64(AS_A[4]))
    for c in AS_A[3::-1]:
        h = np.int64(c) + ((h * t + np.int64(1 << 29)) >> np.int64(30))
    poly = (h * t + np.int64(1 << 29)) >> np.int64(30)  # Q30
    mag = np.int64(ONE) - ((poly * _gauss(a, False) + np.int64(1 << 29)) >> np.int64(30))
    return np.sign(u) * mag


def erf(q: np.ndarray, e: int, bits: int = 8) -> Tensor:
    """``erf(x)`` by :func:`erf_as`, one rounding."""
    return requantize(erf_as(to_fixed(q, e)), -FRAC, bits)


def erf_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, bits: int = 8,
                 rand: np.ndarray | None = None) -> Tensor:
    """``dy * 2/sqrt(pi) exp(-x^2)`` (Q16 derivative: ``(K E + 2^15) >> 16``), one rounding."""
    g = (np.int64(TWO_OVER_SQRT_PI) * _gauss(to_fixed(q, e), False) + np.int64(1 << 15)) >> np.int64(FRAC)
    return requantize(as_int64(dq) * g, int(de) - FRAC, bits, rand=rand)


def _erf_scaled(x: np.ndarray, accurate: bool = False) -> np.ndarray:
    """``erf(x / sqrt 2)`` in Q16 for Q16 ``x`` (i-erf, or the A&S erf when ``accurate``)."""
    u = (np.clip(x, -_SQ_CLAMP, _SQ_CLAMP) * np.int64(INV_SQRT2) + np.int64(1 << 15)) >> np.int64(FRAC)
    return erf_as(u) if accurate else ierf(u)


def gelu(q: np.ndarray, e: int, bits: int = 8, method: str = "ibert") -> Tensor:
    """GELU: the exact product ``q (2^16 + L)`` at ``e - 17``, one rounding; ``L`` is i-erf
    (``method="ibert"``, I-BERT's i-GELU) or the A&S erf (``"as"``: error ``<= 2^(e_out-1) +
    |x| 1e-3``, about 10x smaller, at the cost of one division and an i-exp per element)."""
    if method not in ("ibert", "as"):
        raise ValueError(f"gelu: method must be 'ibert' or 'as', got {method!r}")
    big_l = _erf_scaled(to_fixed(q, e), method == "as")
    return requantize(as_int64(q) * (np.int64(ONE) + big_l), int(e) - FRAC - 1, bits)


def gelu_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, bits: int = 8,
                  rand: np.ndarray | None = None) -> Tensor:
    """``dy * [(1 + L)/2 + x phi(x)]`` in Q17 (``phi`` via i-exp of ``-x^2/2``), one rounding."""
    x = to_fixed(q, e)
    xc = np.clip(x, -_SQ_CLAMP, _SQ_CLAMP)
    phi = np.int64(INV_SQRT_2PI) * _gauss(x, True)  # Q32
    xphi = (xc * phi + np.int64(1 << 30)) >> np.int64(31)  # Q17
    deriv = np.int64(ONE) + _erf_scaled(x, True) + xphi  # Q17
    return requantize(as_int64(dq) * deriv, int(de) - FRAC - 1, bits, rand=rand)

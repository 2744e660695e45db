"""Integer-only exponential family: i-exp, log2, Exp, Softmax, Softmax + cross-entropy, Sigmoid,
Tanh, and their backward rules.

Needs :mod:`rctc.runtime.intref.core`. Internally a real ``x`` is the fixed-point integer
``X = round(x * 2^16)`` (Q16, :func:`to_fixed`, nearest; magnitudes clamped at ``2^24``
before scaling, far past every saturation point).

i-exp (I-BERT, Kim et al. 2021), for ``X <= 0``: ``z = floor(-X / LN2)`` (an integer floor
division: C must floor, it does for these non-negative operands), ``p = X + z LN2`` in
``(-ln2, 0]``, ``exp(p) ~= 0.3585 (p + 1.353)^2 + 0.344`` evaluated as
``(A (p+B)^2 + C 2^32 + 2^31) >> 32`` (Q16, the constants ``LN2, A, B, C`` are
``round(c * 2^16)``), then ``>> z`` with nearest rounding. Error (measured over every Q16
input in ``[-12, 0]``, tests): ``<= 3.2e-3`` relative before the final shift (the
polynomial's own error; measured 3.15e-3), so ``|iexp(X) 2^-16 - exp(x)| <= 2^-17 + 3.2e-3
exp(x)``.

log2 (for the loss value): ``L = floor(log2 v)`` by leading bit, the mantissa normalised to
``[2^30, 2^31)`` (truncating), then 16 rounds of squaring (``m = m^2 >> 30``; a bit is 1 when
``m >= 2^31``, then ``m >>= 1``): Q16, error ``< 2^-15`` (measured ``<= 2^-16``).

Every output is rounded once to ``bits`` by ``requantize`` (stochastic in backward rules when
``rand`` is given).
"""

from __future__ import annotations

import functools

import numpy as np

from rctc.runtime.intref.core import (
    align,
    as_int64,
    bit_length,
    check_rand,
    isqrt_array,
    recip_fixed,
    requantize,
    shift,
)
from rctc.runtime.intref.rows import row_dot, row_max, row_sum

__all__ = [
    "FRAC",
    "exp",
    "exp_backward",
    "iexp",
    "ilog2",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
    "softmax_parts",
    "tanh",
    "tanh_backward",
    "to_fixed",
]

FRAC = 16
ONE = 1 << FRAC
LN2 = 45426  # round(ln 2 * 2^16)
LN2_Q32 = 2977044472  # round(ln 2 * 2^32)
IEXP_A = 23495  # round(0.3585 * 2^16)
IEXP_B = 88670  # round(1.353 * 2^16)
IEXP_C = 22544  # round(0.344 * 2^16)
_CLAMP = 1 << 24  # |x| clamp (real units) before scaling to Q16
_Z_MAX = 62
_FRAC_WEIGHTS = np.int64(1) << np.arange(FRAC - 1, -1, -1, dtype=np.int64)  # ilog2's bit k: 2^(15-k)
Tensor = tuple[np.ndarray, int]


def to_fixed(q: np.ndarray, e: int, frac: int = FRAC) -> np.ndarray:
    """``round(q * 2^(e + frac))`` (nearest half up) as int64, ``|x|`` clamped at ``2^24``."""
    x = as_int64(q)
    k = int(e) + frac
    if k > 0:
        lim = (_CLAMP << frac) >> k
        return np.minimum(np.maximum(x, -lim), lim) << np.int64(k)  # np.clip's value, without its overhead
    return np.minimum(np.maximum(shift(x, k), -(_CLAMP << frac)), _CLAMP << frac)


def _rshift_var(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``(x + 2^(z-1)) >> z`` per element (``0 <= z <= 62``, ``0 <= x < 2^40``)."""
    half = np.where(z > 0, np.int64(1) << np.maximum(z - 1, 0), 0)
    return (x + half) >> z


def _iexp_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(z, E_p)`` with ``exp(x) ~= E_p 2^-16 2^-z`` for Q16 ``x`` (any sign; ``z`` may be < 0)."""
    z = (-x) // np.int64(LN2)  # floor division
    p = x + z * np.int64(LN2)  # in (-LN2, 0]
    t = p + np.int64(IEXP_B)
    poly = np.int64(IEXP_A) * t * t + np.int64(IEXP_C << 32)
    return z, (poly + np.int64(1 << 31)) >> np.int64(32)


def iexp(x: np.ndarray) -> np.ndarray:
    """``exp(x)`` in Q16 for Q16 ``x <= 0`` (int64)."""
    x = as_int64(x)
    if x.size and int(x.max()) > 0:
        raise ValueError("iexp: the argument must be <= 0 (subtract the maximum first)")
    z, ep = _iexp_parts(x)
    return _rshift_var(ep, np.minimum(z, _Z_MAX))


def ilog2(v: np.ndarray) -> np.ndarray:
    """``log2(v)`` in Q16 for positive int64 ``v`` (leading bit + 16 squarings).

    The 16 rounds' fraction is a non-decreasing function of the mantissa ``m`` (a larger ``m``
    squares to a larger or equal value, and a bit of 1 where the smaller gives 0 outweighs every
    later bit), so it is the number of thresholds ``t_j <= m`` (:func:`_log2_thresholds`, the
    least mantissa whose rounds reach ``j``): one binary search per element instead of 64 numpy
    passes, the same integers (:func:`_ilog2_rounds` is the definition, tests compare them)."""
    v = as_int64(v)
    if v.size and int(v.min()) <= 0:
        raise ValueError("ilog2: the argument must be positive")
    lead, m = _mantissa(v)
    frac = np.searchsorted(_log2_thresholds(), m, side="right").astype(np.int64, copy=False)
    return (lead << np.int64(FRAC)) + frac


def _mantissa(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(floor(log2 v), m)`` of positive int64 ``v``: the mantissa normalised (truncating) to ``[2^30, 2^31)``."""
    lead = bit_length(v) - 1
    return lead, np.where(lead >= 30, v >> np.maximum(lead - 30, 0), v << np.maximum(30 - lead, 0))


def _frac_rounds(m: np.ndarray) -> np.ndarray:
    """The 16 squaring rounds on mantissas ``m`` in ``[2^30, 2^31)``: the Q16 fraction of log2 (int64)."""
    m = np.array(m, np.int64)  # a copy: the rounds work in place
    bits = np.empty((FRAC, *m.shape), np.int64)
    for k in range(FRAC):  # m in [2^30, 2^31): m^2 >> 30 in [2^30, 2^32), its bit 31 is the next bit
        np.multiply(m, m, out=m)
        np.right_shift(m, 30, out=m)
        np.right_shift(m, 31, out=bits[k])
        np.right_shift(m, bits[k], out=m)
    return (bits * _FRAC_WEIGHTS.reshape(FRAC, *([1] * m.ndim))).sum(axis=0)


def _ilog2_rounds(v: np.ndarray) -> np.ndarray:
    """:func:`ilog2` of a positive int64 array by its rounds (the definition)."""
    lead, m = _mantissa(as_int64(v))
    return (lead << np.int64(FRAC)) + _frac_rounds(m)


@functools.lru_cache(maxsize=1)
def _log2_thresholds() -> np.ndarray:
    """``t_j`` for ``j = 1 .. 2^16 - 1``: the least mantissa in ``[2^30, 2^31)`` whose rounds give a
    fraction ``>= j`` (``2^31`` where none does), read-only int64.

    The rounds run backwards from ``L = 2^30`` (after the last round any state will do): a round
    whose bit must be ``c`` and whose next state must be at least ``L`` needs ``m^2 >> 30 >= L << c``
    (``c = 0``: a square at ``2^31`` or more sets the bit, more than enough; ``c = 1``: the halved
    square at least ``L``), so the least ``m`` is ``ceil(sqrt((L << c) << 30)) = isqrt(y - 1) + 1``
    with ``y = (L << c) << 30``, raised to ``2^30`` and capped at ``2^31`` (none): 16 integer square
    roots of 65535 values. Tests check ``frac(t_j) >= j > frac(t_j - 1)`` against the rounds."""
    j = np.arange(1, 1 << FRAC, dtype=np.int64)
    least = np.full(j.shape, 1 << 30, np.int64)
    for k in range(FRAC):  # the rounds, last first: bit k of the fraction is round 15 - k's
        need = (least << ((j >> np.int64(k)) & np.int64(1))) << np.int64(30)  # <= 2^31 << 1 << 30 = 2^62
        root = isqrt_array(np.minimum(need, (1 << 62) - 1) - 1) + 1  # 2^62 - 2: isqrt 2^31 - 1, so 2^31
        least = np.clip(root, 1 << 30, 1 << 31)
    least.flags.writeable = False
    return least


def _exp_aligned(q: np.ndarray, e: int) -> Tensor:
    """``exp(x)`` for every element on one grid: ``(acc, e_acc)``, ``acc`` int64 (< 2^17)."""
    z, ep = _iexp_parts(to_fixed(q, e))
    if not z.size:
        return ep, -FRAC
    zmin = int(z.min())
    return _rshift_var(ep, np.minimum(z - zmin, _Z_MAX)), -FRAC - zmin


def exp(q: np.ndarray, e: int, bits: int = 8) -> Tensor:
    """``exp(x)`` for any ``x``: i-exp per element, aligned to the largest, one rounding."""
    acc, ea = _exp_aligned(q, e)
    return requantize(acc, ea, bits)


def exp_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, bits: int = 8,
                 rand: np.ndarray | None = None) -> Tensor:
    """``dy * exp(x)`` (exp recomputed from the input as in :func:`exp`), one rounding."""
    acc, ea = _exp_aligned(q, e)
    return requantize(as_int64(dq) * acc, int(de) + ea, bits, rand=rand)


@functools.lru_cache(maxsize=64)
def _exp_of_gap(e: int) -> np.ndarray:
    """``iexp(to_fixed(-k, e))`` for ``k = 0 .. 255`` (read-only): softmax's Q16 ``exp(x - max)`` of
    8-bit logits at exponent ``e``, element by element the values the formula gives."""
    t = iexp(to_fixed(-np.arange(256, dtype=np.int64), e))
    t.flags.writeable = False
    return t


def softmax_parts(q: np.ndarray, e: int, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(E, S, R)``: Q16 ``exp(x - max)``, their row sum ``S >= 2^16`` and ``R = round(2^46 / S)``
    (what softmax, the loss and its backward share; a caller may compute them once for both).
    8-bit logits read ``E`` from :func:`_exp_of_gap` (the same integers, one lookup an element)."""
    x = np.asarray(q)
    last = x.ndim > 0 and axis % x.ndim == x.ndim - 1  # rows along the last axis: the row reductions
    if x.dtype == np.int8 and x.size:  # x - max takes 256 values at most: i-exp of each, looked up
        top = row_max(x, keepdims=True) if last else x.max(axis=axis, keepdims=True)
        gap = x.astype(np.int16)
        np.subtract(top.astype(np.int16), gap, out=gap)  # in [0, 255]
        ex = np.take(_exp_of_gap(int(e)), gap)
    else:
        x = as_int64(x)
        ex = iexp(to_fixed(x - x.max(axis=axis, keepdims=True), e))
    s = row_sum(ex, np.int64, keepdims=True) if last and ex.size else ex.sum(axis=axis, keepdims=True)
    r = (np.int64(1 << 46) + (s >> np.int64(1))) // s
    return ex, s, r


def softmax(q: np.ndarray, e: int, axis: int = -1, bits: int = 8) -> Tensor:
    """``E_i * R`` at ``2^-46`` (``E_i / S``), one rounding. Error ``<= 2^(e_out-1) + 4e-3``
    absolute (i-exp's relative error on numerator and sum; measured ``< 1e-3``)."""
    ex, _, r = softmax_parts(q, e, axis)
    return requantize(ex * r, -46, bits)


def softmax_backward(qy: np.ndarray, ey: int, dq: np.ndarray, de: int, axis: int = -1, bits: int = 8,
                     rand: np.ndarray | None = None) -> Tensor:
    """``y * (dy - sum(dy y))`` from the stored output ``y``: exact integer sums and products
    (``dy`` shifted exactly to the exponent of ``sum(dy y)``), one rounding."""
    ey, de = int(ey), int(de)
    qy, dq = np.asarray(qy), np.asarray(dq)
    if _softmax_backward_fits_int32(qy, dq, ey, axis):
        y, d = qy.astype(np.int32), dq.astype(np.int32)
        if axis % qy.ndim == qy.ndim - 1 and qy.size:
            s = row_dot(d, y, np.int32, keepdims=True)
        else:
            s = np.multiply(d, y).sum(axis=axis, keepdims=True, dtype=np.int32)
        if ey < 0:  # align's exponent: de + ey, d shifted up by -ey
            inner = np.left_shift(d, np.int32(-ey), out=d)
            inner -= s
        else:  # de, s shifted up by ey
            inner = np.subtract(d, s << np.int32(ey), out=d)
        inner *= y
        return requantize(inner, min(de, de + ey) + ey, bits, rand=rand, owned=True)
    y, d = as_int64(qy), as_int64(dq)
    s = (d * y).sum(axis=axis, keepdims=True)
    (da, sa), ei = align([(d, de), (s, de + ey)])
    return requantize(y * (da - sa), ei + ey, bits, rand=rand)


def _softmax_backward_fits_int32(qy: np.ndarray, dq: np.ndarray, ey: int, axis: int) -> bool:
    """Whether :func:`softmax_backward`'s integers fit int32 by their dtypes' bounds: 8-bit ``y``
    and ``dy`` (``|v| <= 128``), ``|ey| <= 16`` (align's headroom never binds: ``|dy| < 2^8``,
    ``|sum dy y| < 2^25`` for rows below 2^9, so its exponent is ``min(de, de + ey)``), and
    ``128 ((128 << max(-ey, 0)) + (L 2^14 << max(ey, 0))) < 2^31`` for rows of ``L``."""
    if qy.dtype.kind != "i" or dq.dtype.kind != "i" or qy.dtype.itemsize != 1 or dq.dtype.itemsize != 1:
        return False
    if abs(ey) > 16 or not qy.ndim:
        return False
    row = qy.shape[axis]
    return row < 1 << 9 and 128 * ((128 << max(-ey, 0)) + ((row << 14) << max(ey, 0))) < 1 << 31


def softmax_cross_entropy(q: np.ndarray, e: int, labels: np.ndarray,
                          parts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[int, int]:
    """Mean ``-log softmax(x)[label]`` over the batch of ``(B, C)`` logits: ``(loss_q, -16)``.

    Per row ``ln(S 2^-16) + (max - x_label)``: ``log2`` by :func:`ilog2`, times ``ln 2`` in Q32,
    both terms Q16; the mean is ``round(sum / B)`` (half up). Error ``<= 3.3e-3 + 2^-14``
    (i-exp's relative error through the log, ilog2, the Q16 roundings). ``parts``: this ``q``'s
    :func:`softmax_parts` when the caller has them.
    """
    x = as_int64(q)
    lab = np.asarray(labels).astype(np.int64)
    _, s, _ = softmax_parts(x, e, -1) if parts is None else parts
    lg = ilog2(s[:, 0]) - np.int64(FRAC << FRAC)
    ln = (lg * np.int64(LN2_Q32) + np.int64(1 << 31)) >> np.int64(32)
    gap = to_fixed(x.max(axis=1) - x[np.arange(x.shape[0]), lab], e)
    total = int((ln + gap).sum())
    b = x.shape[0]
    return (2 * total + b) // (2 * b), -FRAC


def softmax_cross_entropy_backward(q: np.ndarray, e: int, labels: np.ndarray, bits: int = 8,
                                   rand: np.ndarray | None = None,
                                   parts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Tensor:
    """``(softmax(x) - onehot) / B`` as errors at ``bits``: ``p`` in Q30 (``(E R + 2^15) >> 16``),
    minus ``2^30`` at the label, times ``round(2^24 / B)``, one rounding (stochastic with ``rand``).
    Error ``<= 2^(e_out-1) + 4e-3 / B`` (softmax's) for a loss seed of 1. ``parts`` as in
    :func:`softmax_cross_entropy`."""
    x = as_int64(q)
    lab = np.asarray(labels).astype(np.int64)
    ex, _, r = softmax_parts(x, e, -1) if parts is None else parts
    p = (ex * r + np.int64(1 << 15)) >> np.int64(16)
    p[np.arange(x.shape[0]), lab] -= np.int64(1 << 30)
    rand = check_rand(rand, x.shape)
    return requantize(p * np.int64(recip_fixed(x.shape[0], 24)), -54, bits, rand=rand)


def _sigmoid_q16(q: np.ndarray, e: int) -> np.ndarray:
    """``sigmoid(x)`` in Q16: ``E = iexp(-|X|)``, ``s = round(E 2^16 / (2^16 + E))``, mirrored."""
    x = to_fixed(q, e)
    ex = iexp(-np.abs(x))
    den = np.int64(ONE) + ex
    s = ((ex << np.int64(FRAC)) + (den >> np.int64(1))) // den
    return np.where(x >= 0, np.int64(ONE) - s, s)


def sigmoid(q: np.ndarray, e: int, bits: int = 8) -> Tensor:
    """Sigmoid via i-exp; one rounding. Error ``<= 2^(e_out-1) + 1e-3`` (i-exp's, through
    ``E / (1 + E)`` whose sensitivity is at most 1/4)."""
    return requantize(_sigmoid_q16(q, e), -FRAC, bits)


def sigmoid_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, bits: int = 8,
                     rand: np.ndarray | None = None) -> Tensor:
    """``dy * s (1 - s)`` with ``s`` recomputed in Q16 from the input; one rounding."""
    s = _sigmoid_q16(q, e)
    return requantize(as_int64(dq) * (s * (np.int64(ONE) - s)), int(de) - 2 * FRAC, bits, rand=rand)


def _tanh_q16(q: np.ndarray, e: int) -> np.ndarray:
    """``tanh(x)`` in Q16: ``E = iexp(-2|X|)``, ``t = max(round((1 - E) 2^16 / (1 + E)), 0)``, signed."""
    x = to_fixed(q, e)
    ex = iexp(-2 * np.abs(x))
    den = np.int64(ONE) + ex
    t = np.maximum((((np.int64(ONE) - ex) << np.int64(FRAC)) + (den >> np.int64(1))) // den, 0)
    return np.sign(x) * t


def tanh(q: np.ndarray, e: int, bits: int = 8) -> Tensor:
    """Tanh via i-exp; one rounding. Error ``<= 2^(e_out-1) + 2e-3`` (i-exp's, through
    ``(1 - E) / (1 + E)``, sensitivity at most 1/2)."""
    return requantize(_tanh_q16(q, e), -FRAC, bits)


def tanh_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, bits: int = 8,
                  rand: np.ndarray | None = None) -> Tensor:
    """``dy * (1 - t^2)`` with ``t`` recomputed in Q16 from the input; one rounding."""
    t = _tanh_q16(q, e)
    return requantize(as_int64(dq) * (np.int64(ONE << FRAC) - t * t), int(de) - 2 * FRAC, bits, rand=rand)

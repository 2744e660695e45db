"""Dynamic fixed point quantisation helpers (value = q * 2^e, one exponent per tensor).

``q`` is a signed integer array in the *symmetric* range ``[-(2^(b-1)-1), 2^(b-1)-1]``
of its bitwidth ``b``, stored in the smallest numpy integer dtype holding ``b``
bits; ``e`` is a Python int.  Rounding modes:

* ``"nearest"``: float -> int (:func:`quantize`) rounds half to even (``np.rint``,
  exact for every float); integer right shifts (:func:`requantize`,
  :func:`shift_right_round`) round half up, ``(x + 2^(s-1)) >> s``.
* ``"stochastic"``: ``floor(v + r)`` with ``r ~ U[0, 1)`` drawn from the given
  ``np.random.Generator`` (deterministic for a given generator state); for
  integer shifts ``(x + r) >> s`` with ``r`` uniform on ``[0, 2^s)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ROUNDING_MODES",
    "choose_exponent",
    "dequantize",
    "int_dtype_for_bits",
    "qmax_for_bits",
    "quantize",
    "requantize",
    "shift_left",
    "shift_right_round",
]

ROUNDING_MODES = ("nearest", "stochastic")
_MAX_SHIFT = 63
_INT64_MAX = 2**63 - 1


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= int(bits) <= 32:
        raise ValueError(f"bitwidth must be an integer in [2, 32], got {bits!r}")
    return int(bits)


def _check_rounding(rounding: str, rng: np.random.Generator | None) -> None:
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    if rounding == "stochastic" and not isinstance(rng, np.random.Generator):
        raise ValueError("stochastic rounding needs a seeded np.random.Generator (rng=...)")


def qmax_for_bits(bits: int) -> int:
    """Largest magnitude of the symmetric ``bits``-bit range: ``2^(bits-1) - 1``."""
    return (1 << (_check_bits(bits) - 1)) - 1


def int_dtype_for_bits(bits: int) -> np.dtype:
    """Smallest numpy signed integer dtype holding ``bits`` bits (int8 / int16 / int32)."""
    bits = _check_bits(bits)
    return np.dtype(np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32)


def _scale_pow2(x: np.ndarray, k: int) -> np.ndarray:
    """``x * 2^k`` exactly (barring over/underflow of the result), keeping x's float dtype."""
    fin = np.finfo(x.dtype)
    if fin.minexp <= k <= fin.maxexp - 1:
        return x * x.dtype.type(2.0**k)
    return np.ldexp(x, k).astype(x.dtype, copy=False)


def choose_exponent(x_absmax: float, bits: int) -> int:
    """Smallest integer ``e`` with ``x_absmax / 2^e <= 2^(bits-1) - 1``.

    ``x_absmax == 0`` gives ``-(bits - 1)`` (the range then spans about [-1, 1]).
    Raises ``ValueError`` for a negative, NaN or infinite ``x_absmax``.
    """
    qmax = qmax_for_bits(bits)
    m = float(x_absmax)
    if not math.isfinite(m) or m < 0:
        raise ValueError(f"choose_exponent: absmax must be finite and >= 0, got {x_absmax!r}")
    if m == 0.0:
        return -(int(bits) - 1)
    e = math.ceil(math.log2(m) - math.log2(qmax))
    # log2 is inexact: settle the boundary with exact power-of-two scaling (ldexp).
    while math.ldexp(m, -e) > qmax:
        e += 1
    while math.ldexp(m, -(e - 1)) <= qmax:
        e -= 1
    return e


def quantize(
    x: np.ndarray,
    bits: int,
    rounding: str = "nearest",
    rng: np.random.Generator | None = None,
    exp: int | None = None,
) -> tuple[np.ndarray, int]:
    """Quantise float ``x`` to ``bits`` bits: ``(q, e)`` with ``x ~= q * 2^e``.

    ``e`` is :func:`choose_exponent` of ``max|x|`` unless ``exp`` is given; then
    ``q = clip(round(x / 2^e), -qmax, qmax)``.  The division is an exact
    power-of-two scaling done in float32 (float64 if ``x`` is float64).
    Stochastic rounding uses one float32 ``r ~ U[0,1)`` per element (a multiple of
    2^-24): ``q = floor(v) + (r < v - floor(v))``, which is ``floor(v + r)``
    computed without the rounding error of the float sum, so ``E[q] = v`` up to
    2^-24.  Raises ``ValueError`` on NaN, and on infinity when ``exp`` is not given.
    """
    bits = _check_bits(bits)
    _check_rounding(rounding, rng)
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"quantize: expected a real array, got dtype {x.dtype}")
    v = x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=False)
    qmax = qmax_for_bits(bits)
    absmax = float(np.max(np.abs(v))) if v.size else 0.0
    if math.isnan(absmax):
        raise ValueError("quantize: input contains NaN")
    if exp is None:
        exp = choose_exponent(absmax, bits)
    exp = int(exp)
    v = _scale_pow2(v, -exp)
    if rounding == "nearest":
        r = np.rint(v)
    else:
        fl = np.floor(v)
        u = rng.random(v.shape, dtype=np.float32)  # type: ignore[union-attr]
        r = fl + (u < (v - fl))
    np.clip(r, -qmax, qmax, out=r)
    return r.astype(int_dtype_for_bits(bits)), exp


def dequantize(q: np.ndarray, e: int) -> np.ndarray:
    """float32 values ``q * 2^e`` (exact while |q| < 2^24 and the result is a normal float32)."""
    q = np.asarray(q)
    return _scale_pow2(q.astype(np.float32), int(e))


def _as_int64(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iu" or x.dtype == np.uint64:
        raise TypeError(f"{what}: expected a signed (or <=32-bit unsigned) integer array, got {x.dtype}")
    return x.astype(np.int64, copy=False)


def _absmax_int(x: np.ndarray) -> int:
    return max(int(x.max()), -int(x.min())) if x.size else 0


def _shift_round(
    x: np.ndarray, s: int, absmax: int, rounding: str, rng: np.random.Generator | None
) -> np.ndarray:
    """``floor((x + add) / 2^s)`` for int64 ``x``, 0 <= s <= 63, integer ops only.

    ``add`` is ``2^(s-1)`` (nearest, round half up) or uniform on ``[0, 2^s)``
    (stochastic).  ``absmax`` bounds ``|x|``; when ``x + add`` could overflow int64
    the sum is split as ``x = (x >> s) * 2^s + (x & (2^s - 1))`` and the low part
    plus ``add`` (< 2^(s+1) <= 2^64) is formed in uint64.
    """
    if s == 0:
        return x.copy()
    if not 0 < s <= _MAX_SHIFT:
        raise ValueError(f"shift {s} is outside [0, {_MAX_SHIFT}]")
    if rounding == "nearest":
        add: np.ndarray = np.asarray(1 << (s - 1), np.uint64)
    else:
        add = rng.integers(0, 1 << s, size=x.shape,  # type: ignore[union-attr]
                           dtype=np.uint32 if s <= 32 else np.uint64)
    if absmax + (1 << s) <= _INT64_MAX:
        return (x + add.astype(np.int64)) >> s
    low = (x & np.int64((1 << s) - 1)).view(np.uint64)
    carry = ((low + add.astype(np.uint64)) >> np.uint64(s)).astype(np.int64)
    return (x >> s) + carry


def requantize(
    acc: np.ndarray,
    acc_exp: int,
    bits: int,
    rounding: str = "nearest",
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, int]:
    """Narrow an integer accumulator ``acc * 2^acc_exp`` to ``bits`` bits: ``(q, acc_exp + s)``.

    The shift ``s >= 0`` is the smallest with ``max|acc| <= qmax * 2^s`` (the
    integer analogue of :func:`choose_exponent`); then ``q = (acc + 2^(s-1)) >> s``
    (nearest, round half up) or ``q = (acc + r) >> s`` with ``r`` uniform on
    ``[0, 2^s)`` (stochastic, unbiased).  Both results lie within ``[-qmax, qmax]``:
    ``acc / 2^s`` does, and rounding up never passes the integer ``qmax``.  Integer
    operations only; no float is involved.
    """
    bits = _check_bits(bits)
    _check_rounding(rounding, rng)
    x = _as_int64(acc, "requantize")
    qmax = qmax_for_bits(bits)
    m = _absmax_int(x)
    t = -(-m // qmax)  # ceil(m / qmax); smallest s with 2^s >= t
    s = (t - 1).bit_length() if t > 0 else 0
    q = _shift_round(x, s, m, rounding, rng)
    return q.astype(int_dtype_for_bits(bits)), int(acc_exp) + s


def shift_left(q: np.ndarray, k: int, dtype: np.dtype | type | None = None) -> np.ndarray:
    """Lossless ``q * 2^k`` in ``dtype`` (default: q's dtype); ``OverflowError`` if it does not fit."""
    x = np.asarray(q)
    if x.dtype.kind not in "iu":
        raise TypeError(f"shift_left: expected an integer array, got {x.dtype}")
    k = int(k)
    if k < 0:
        raise ValueError(f"shift_left: k must be >= 0, got {k}")
    dt = np.dtype(dtype) if dtype is not None else x.dtype
    info = np.iinfo(dt)
    if x.size and (int(x.max()) << k > info.max or int(x.min()) << k < info.min):
        raise OverflowError(f"shift_left: q << {k} does not fit {dt}")
    if k >= 8 * dt.itemsize:  # only all-zero arrays get here
        return np.zeros(x.shape, dt)
    return x.astype(dt) << dt.type(k)


def shift_right_round(q: np.ndarray, k: int) -> np.ndarray:
    """``q / 2^k`` rounded half up, ``(q + 2^(k-1)) >> k``, in q's dtype (never overflows).

    Computed in int64 (overflow-safe for every int64 value); ``k >= 0``.
    """
    x = np.asarray(q)
    k = int(k)
    if k < 0:
        raise ValueError(f"shift_right_round: k must be >= 0, got {k}")
    x64 = _as_int64(x, "shift_right_round")
    if k > _MAX_SHIFT:  # |x| <= 2^63 <= 2^(k-1): (x + 2^(k-1)) / 2^k lies in [0, 1)
        return np.zeros_like(x)
    return _shift_round(x64, k, _absmax_int(x64), "nearest", None).astype(x.dtype)

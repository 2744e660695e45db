"""The integer number format of rct mode and its rescaling primitives (integer arithmetic only).

A tensor is ``(q, e)``: a signed integer array ``q`` and one Python-int exponent ``e``;
its value is ``q * 2^e``. At ``b`` bits, ``q`` lies in the symmetric range
``[-(2^(b-1)-1), 2^(b-1)-1]`` and is stored in the smallest int dtype holding ``b`` bits.
Accumulators are int64 arrays whose magnitude stays within ``2^62`` (checked), so the
rounding constant (at most ``2^s - 1``) added before a shift never overflows.

Roundings (the only two, everywhere in :mod:`rctc.runtime.intref`):

* nearest: ``(x + 2^(s-1)) >> s`` (arithmetic shift: round half up, toward +inf);
* stochastic: ``(x + r) >> s`` with ``r`` the top ``s`` bits of a uint32 random word
  (``rand >> (32 - s)``) for ``s <= 32``, and ``rand << (s - 32)`` for ``s > 32``;
  ``E[result] = x / 2^s`` up to ``2^-32`` of a last bit (``s > 32``: up to ``2^(s-32)``/2^s).

The random words are an explicit argument (``rand``: uint32 of the result's shape), so the
algorithms do not depend on which generator supplies them. ``rand=None`` means nearest.
:func:`requantize` also takes a zero-argument callable returning them, called only when the
rounding needs words (a shift of 0 needs none): the words are counter-based, so a draw not
made changes no other word.

Invariant: no function here (or in the modules built on it) performs a float operation on
data; floats appear only in :func:`fixed_point` / :func:`exact_ratio`, which turn a
compile-time constant (an ONNX float attribute) into integers once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

__all__ = [
    "ACC_LIMIT",
    "Rand",
    "absmax",
    "align",
    "as_int64",
    "check_rand",
    "exact_ratio",
    "fixed_point",
    "isqrt_array",
    "qmax",
    "recip_fixed",
    "requant_shift",
    "requantize",
    "round_part",
    "rsqrt_fixed",
    "rsqrt_fixed_array",
    "bit_length",
    "shift",
    "shift_round",
    "storage_dtype",
]

#: the words of a stochastic rounding: uint32 of the result's shape, a zero-argument callable
#: returning them (drawn only if needed, :func:`requantize`), or None (nearest)
Rand = np.ndarray | Callable[[], np.ndarray] | None
#: every int64 accumulator handed to a rounding shift must satisfy ``|x| <= ACC_LIMIT``
ACC_LIMIT = 2**62
#: headroom kept by :func:`align`: aligned values stay below 2^61, so a sum or difference of
#: two of them stays within :data:`ACC_LIMIT`
ALIGN_BITS = 61
I32_MAX = 2**31 - 1  # the largest int32; the bound of every int32 fast path


def qmax(bits: int) -> int:
    """Largest magnitude of the symmetric ``bits``-bit range, ``2^(bits-1) - 1``."""
    if not 2 <= int(bits) <= 32:
        raise ValueError(f"bitwidth must be in [2, 32], got {bits}")
    return (1 << (int(bits) - 1)) - 1


def storage_dtype(bits: int) -> np.dtype:
    """int8 / int16 / int32: the smallest signed dtype holding ``bits`` bits."""
    qmax(bits)
    return np.dtype(np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32)


def _int_array(x: np.ndarray) -> np.ndarray:
    """``x`` as an array of its own integer dtype (signed, or unsigned up to 32 bits); ``TypeError`` otherwise."""
    x = np.asarray(x)
    if x.dtype.kind not in "iu" or x.dtype == np.uint64:
        raise TypeError(f"intref: expected an integer array, got dtype {x.dtype}")
    return x


def as_int64(x: np.ndarray) -> np.ndarray:
    """``x`` as int64 (a signed or <= 32-bit unsigned integer array); ``TypeError`` otherwise."""
    return _int_array(x).astype(np.int64, copy=False)


def absmax(x: np.ndarray) -> int:
    """``max |x|`` as a Python int (0 for an empty array)."""
    return max(int(x.max()), -int(x.min())) if x.size else 0


def check_rand(rand: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """``rand`` as a uint32 array of ``shape`` (or None); ``ValueError`` on a wrong dtype / shape."""
    if rand is None:
        return None
    rand = np.asarray(rand)
    if rand.dtype != np.uint32 or rand.shape != tuple(shape):
        raise ValueError(f"rand must be uint32 of shape {tuple(shape)}, got {rand.dtype} {rand.shape}")
    return rand


def shift_round(x: np.ndarray, s: int, rand: np.ndarray | None = None) -> np.ndarray:
    """``x / 2^s`` rounded (nearest half up, or stochastic with ``rand``), int64; ``s >= 0``.

    Error: ``|result - x/2^s| <= 1/2`` (nearest), ``< 1`` (stochastic, unbiased).
    Shifts ``s > 62`` give 0 under both roundings (``|x| <= 2^62 < 2^(s-1)``: nearest is 0;
    the stochastic case is defined as nearest there, so ``x + r`` never overflows int64).
    """
    x = _int_array(x)
    s = int(s)
    if s < 0:
        raise ValueError(f"shift_round: s must be >= 0, got {s}")
    if s == 0:
        return x.astype(np.int64)
    m = absmax(x)
    if m > ACC_LIMIT:
        raise OverflowError(f"intref: accumulator magnitude {m} exceeds 2^62")
    return _rounded(x, s, m, check_rand(rand, x.shape)).astype(np.int64, copy=False)


def _rounded(x: np.ndarray, s: int, m: int, rand: np.ndarray | None, owned: bool = False) -> np.ndarray:
    """:func:`shift_round`'s arithmetic for ``s >= 1`` and ``m >= max|x|`` (``m <= 2^62``), in the
    narrowest dtype it provably fits: int32 when ``m + 2^s - 1 < 2^31`` (``x + r`` with
    ``0 <= r < 2^s`` for stochastic, ``x + 2^(s-1)`` for nearest: no intermediate leaves int32,
    so the result equals the int64 arithmetic bit for bit), else int64. ``owned``: ``x`` is a
    temporary of the caller's and may be overwritten (no fresh array for the nearest rounding)."""
    if s > 62:
        return np.zeros(x.shape, np.int64)
    if s <= 31 and m + (1 << s) - 1 <= I32_MAX:
        own = owned and x.dtype == np.int32
        xi = x if x.dtype == np.int32 else x.astype(np.int32)
        if rand is None:
            t = np.add(xi, np.int32(1 << (s - 1)), out=xi if own or x.dtype != np.int32 else None)
        else:
            t = np.right_shift(rand, np.uint32(32 - s)).view(np.int32)  # < 2^s <= 2^31: the same value
            np.add(xi, t, out=t)
        np.right_shift(t, np.int32(s), out=t)
        return t
    own = owned or x.dtype != np.int64
    x = x.astype(np.int64, copy=False)
    if rand is None:
        t = np.add(x, np.int64(1 << (s - 1)), out=x if own else None)
        t >>= np.int64(s)
        return t
    if s > 32:
        # (x + r 2^k) >> (32 + k) with k = s - 32 is ((x >> k) + r) >> 32: with x = 2^k Q + rho,
        # 0 <= rho < 2^k, the value is (Q + r) / 2^32 + rho 2^-(32+k), and the fraction added to
        # the integer Q + r stays below 2^-32, so both floors agree (two passes fewer)
        t = np.right_shift(x, np.int64(s - 32), out=x if own else None)
        np.add(t, rand, out=t)  # uint32 words widen exactly into int64
        t >>= np.int64(32)
        return t
    r = rand.astype(np.int64)
    r >>= np.int64(32 - s)
    r += x
    r >>= np.int64(s)
    return r


def shift(x: np.ndarray, k: int, rand: np.ndarray | None = None) -> np.ndarray:
    """``x * 2^k``: an exact left shift for ``k >= 0`` (``OverflowError`` past 2^62), else
    :func:`shift_round` by ``-k``."""
    x = as_int64(x)
    k = int(k)
    if k <= 0:
        return shift_round(x, -k, rand)
    if x.size and absmax(x) > (ACC_LIMIT >> k):
        raise OverflowError(f"intref: exact left shift by {k} overflows 2^62")
    return x << np.int64(k)


def requant_shift(m: int, bits: int, stochastic: bool) -> int:
    """The requantise shift for max magnitude ``m``: the smallest ``s >= 0`` whose rounded
    maximum stays in range (``(m + 2^(s-1)) >> s <= qmax`` for nearest, ``m <= qmax * 2^s``
    for stochastic, where ``r`` may reach ``2^s - 1``)."""
    qm = qmax(bits)
    if m <= qm:
        return 0
    if stochastic:
        t = -(-m // qm)
        return (t - 1).bit_length()
    s = max(0, (m // qm).bit_length() - 1)
    while (m + (1 << (s - 1) if s else 0)) >> s > qm:
        s += 1
    return s


def requantize(acc: np.ndarray, e_acc: int, bits: int, *, bias: np.ndarray | None = None,
               bias_exp: int | None = None, rand: Rand = None, owned: bool = False) -> tuple[np.ndarray, int]:
    """Accumulator ``acc * 2^e_acc`` (+ ``bias * 2^bias_exp``) -> ``(q, e)`` at ``bits`` bits.

    The bias is first brought to the accumulator's exponent, by an exact left shift when
    ``bias_exp >= e_acc`` and by a nearest rounding right shift otherwise, and added (numpy
    broadcasting). Then ``s = requant_shift(max|x|)`` (``s >= 0``; never a left shift: an
    accumulator within range is already exact, and shifting it left adds no information),
    ``q = shift_round(x, s, rand)`` and ``e = e_acc + s``; ``q`` is in range without a clip.
    Error: ``|q*2^e - x*2^e_acc| <= 2^(e-1)`` (nearest) or ``< 2^e`` (stochastic, unbiased),
    plus ``2^(e_acc-1)`` from a rounded bias. An all-zero accumulator gives ``(0, e_acc)``.
    ``owned=True``: ``acc`` is the caller's temporary; it may be overwritten (fewer fresh arrays).
    ``rand`` may be a callable returning the words: called only when ``s > 0``.
    """
    x = _int_array(acc)
    if bias is not None:
        b = shift(as_int64(bias), int(bias_exp) - int(e_acc))
        if x.dtype.itemsize <= 4 and x.dtype.kind == "i" and absmax(x) + absmax(b) <= I32_MAX:
            x = np.add(x, b.astype(np.int32), dtype=np.int32)  # every sum fits int32: the same integers
            owned = True
        elif owned and x.dtype == np.int64 and x.shape == np.broadcast_shapes(x.shape, b.shape):
            x += b
        else:
            x = x.astype(np.int64, copy=False) + b
            owned = True
    m = absmax(x)
    s = requant_shift(m, bits, rand is not None)
    if callable(rand):
        rand = rand() if s else None  # s == 0 rounds nothing: no words drawn
    return round_part(x, m, s, bits, check_rand(rand, x.shape), owned), int(e_acc) + s


def round_part(x: np.ndarray, m: int, s: int, bits: int, rand: np.ndarray | None = None,
               owned: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`requantize`'s rounding of ``x``, a part (or all) of an accumulator whose largest
    magnitude is ``m`` and whose shift is ``s = requant_shift(m, bits, rand is not None)``: element
    by element, so a kernel may round its accumulator block by block once it knows ``m``.
    Returns the storage dtype of ``bits`` (written into ``out`` when given)."""
    dt = storage_dtype(bits)
    if s == 0:  # |x| <= qmax: already in range
        r = x
    elif m > ACC_LIMIT:
        raise OverflowError(f"intref: accumulator magnitude {m} exceeds 2^62")
    else:
        r = _rounded(x, s, m, rand, owned)
    if out is None:
        return r.astype(dt)
    np.copyto(out, r, casting="unsafe")  # every value is in the range of dt
    return out


def align(tensors: list[tuple[np.ndarray, int]], headroom: int = ALIGN_BITS) -> tuple[list[np.ndarray], int]:
    """Bring ``(q_i, e_i)`` to one exponent: the finest ``min(e_i)``, exactly (left shifts),
    unless that would push a value past ``2^headroom`` (default 2^61: the sum or difference of
    two aligned values stays within 2^62); then the common exponent is the
    smallest one that keeps every shifted value below ``2^headroom`` and the finer operands
    are rounded (nearest) to it. Returns the int64 arrays and the common exponent."""
    ints = [as_int64(q) for q, _ in tensors]
    exps = [int(e) for _, e in tensors]
    e_c = min(exps)
    for q, e in zip(ints, exps):
        m = absmax(q)
        if m:  # smallest e_c with m << (e - e_c) < 2^headroom
            e_c = max(e_c, e - (headroom - m.bit_length()))
    return [shift(q, e - e_c) for q, e in zip(ints, exps)], e_c


def recip_fixed(d: int, frac_bits: int) -> int:
    """``round(2^frac_bits / d)`` (half up) for a positive integer ``d``: the fixed-point
    reciprocal; relative error ``<= d / 2^(frac_bits+1)``."""
    d = int(d)
    if d <= 0:
        raise ValueError(f"recip_fixed: divisor must be positive, got {d}")
    return ((1 << frac_bits) + (d >> 1)) // d


def rsqrt_fixed(v: int) -> tuple[int, int]:
    """``1/sqrt(v) ~= m * 2^-f`` for a positive integer ``v``, as ``(m, f)``, ``m`` in
    ``(2^31, 2^32]``.

    ``k = (62 - bitlen(v)) // 2`` (negative for huge ``v``), ``s = isqrt(v * 4^k)`` (floor square
    root of the argument normalised to ``[2^60, 2^62)``, so ``s`` in ``[2^30, 2^31)``),
    ``m = round(2^62 / s)``, ``f = 62 - k``. Relative error ``< 2^-30 + 2^-32 < 2^-29.6``
    (``s`` is floored: ``0 <= sqrt(v)2^k - s < 1``). A C kernel needs only a uint64 isqrt and
    one 64-bit division; on Python ints ``math.isqrt`` gives the same floor root.
    """
    v = int(v)
    if v <= 0:
        raise ValueError(f"rsqrt_fixed: argument must be positive, got {v}")
    k = (62 - v.bit_length()) // 2
    s = math.isqrt(v << (2 * k) if k >= 0 else v >> (-2 * k))
    return ((1 << 62) + (s >> 1)) // s, 62 - k


_POW2 = np.int64(1) << np.arange(63, dtype=np.int64)  # 2^0 .. 2^62


def bit_length(v: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of every element of a non-negative int64 array, exactly (int64 array, v's
    shape): the count of powers of two ``2^0 .. 2^62`` at most ``v``, by one binary search of the
    sorted powers per element (integer comparisons only)."""
    v = np.asarray(v, np.int64)
    return np.searchsorted(_POW2, v, side="right").astype(np.int64, copy=False)


_ISQRT_START_SHIFT = 50  # u >> 50 of a u in [2^60, 2^62): its top 12 bits, in [2^10, 2^12)
_ISQRT_START_LO = 1 << 10
#: Newton's start for every such u: isqrt of the largest u with those top bits, plus one (>= isqrt(u),
#: at most 2^-11 above it, so three steps reach the floor root instead of six from 2^31)
_ISQRT_START = np.array([math.isqrt(((t + 1) << _ISQRT_START_SHIFT) - 1) + 1 for t in range(_ISQRT_START_LO, 1 << 12)],
                        np.int64)


def rsqrt_fixed_array(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rsqrt_fixed` of every element of a positive int64 array: ``(m, f)`` int64 arrays,
    equal element by element to the Python-int version (the floor root by :func:`_isqrt_normalised`)."""
    v = np.asarray(v, np.int64)
    if v.size and int(v.min()) <= 0:
        raise ValueError("rsqrt_fixed: argument must be positive")
    k = (62 - bit_length(v)) // 2
    u = np.where(k >= 0, v << np.maximum(2 * k, 0), v >> np.maximum(-2 * k, 0))
    s = _isqrt_normalised(u)
    return ((np.int64(1) << np.int64(62)) + (s >> np.int64(1))) // s, 62 - k


def isqrt_array(v: np.ndarray) -> np.ndarray:
    """``math.isqrt`` of every element of a non-negative int64 array below ``2^62`` (int64): the
    argument normalised to ``u = v 4^k`` in ``[2^60, 2^62)``, then ``isqrt(u) >> k`` (``floor(floor(x
    2^k) / 2^k) = floor(x)``)."""
    v = np.asarray(v, np.int64)
    if v.size and (int(v.min()) < 0 or int(v.max()) >= ACC_LIMIT):
        raise ValueError("isqrt_array: arguments must be in [0, 2^62)")
    k = (62 - bit_length(np.maximum(v, 1))) // 2  # >= 0 below 2^62
    s = _isqrt_normalised(np.maximum(v, 1) << (2 * k)) >> k
    return np.where(v == 0, 0, s)


def _isqrt_normalised(u: np.ndarray) -> np.ndarray:
    """The floor square root of int64 ``u`` in ``[2^60, 2^62)``: two steps of Newton's integer
    iteration ``s <- min(s, (s + u // s) // 2)`` from a start ``s0 >= sqrt(u)`` (a table on ``u``'s
    top 12 bits), then ``s - [s^2 > u]``.

    Why two steps reach ``isqrt(u)`` or ``isqrt(u) + 1``: the integer step never goes below
    ``isqrt(u)`` (AM-GM, floored) and never above the real Newton step from the same point, which
    is increasing above ``sqrt(u)``. A bucket of the table spans less than ``2^50`` of ``u >= 2^60``,
    so ``s0 - sqrt(u) <= 2^50 / (2 sqrt(2^60)) + 1 = 2^19 + 1``; the real step maps an excess ``d``
    to ``d^2 / (2 s) <= d^2 / 2^31``: ``(2^19 + 1)^2 / 2^31 < 2^7 + 1`` after one step and below
    ``1`` after two. ``s^2 < 2^62`` (``s < 2^31 + 1``) fits int64. The same integers as the
    classical loop run until it stops decreasing (tests compare both with ``math.isqrt``)."""
    s = np.take(_ISQRT_START, (u >> np.int64(_ISQRT_START_SHIFT)) - np.int64(_ISQRT_START_LO))
    for _ in range(2):
        t = u // s
        t += s
        t >>= np.int64(1)
        np.minimum(s, t, out=s)
    t = np.multiply(s, s)
    s -= t > u
    return s


def fixed_point(value: float, frac_bits: int) -> int:
    """Compile-time: ``round(value * 2^frac_bits)`` (half away from zero), exact (Fraction)."""
    v = Fraction(value) * (1 << frac_bits)
    n = math.floor(abs(v) + Fraction(1, 2))
    return n if v >= 0 else -n


def exact_ratio(value: float) -> tuple[int, int]:
    """Compile-time: a float32 attribute as the exact ratio ``(num, den)``, ``den`` a power of two."""
    return _exact_ratio(float(np.float32(value)))


@functools.lru_cache(maxsize=1024)
def _exact_ratio(value: float) -> tuple[int, int]:
    f = Fraction(value)
    return f.numerator, f.denominator

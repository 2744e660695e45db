"""The per-group scalar arithmetic of the normalisations (rctc.runtime.intref.norm): rounded
shifts and divisions of Python ints and int64 arrays, the eps term at a headroom, the headroom
itself, and per-group multipliers brought to one exponent.

Needs :mod:`rctc.runtime.intref.core`. Leaves: pure functions; the eps terms are cached (read-only
arrays).
"""

from __future__ import annotations

import functools

import numpy as np

from rctc.runtime.intref.core import absmax, bit_length, exact_ratio

__all__ = ["div_round", "div_rows", "eps_term", "eps_terms", "headroom", "multipliers", "rshift"]


def rshift(v: int, s: int) -> int:
    """``v * 2^-s`` for a Python int: exact left shift when ``s <= 0``, else rounded half up."""
    return v << -s if s <= 0 else (v + (1 << (s - 1))) >> s


def div_round(v: int, n: int) -> int:
    """``round(v / n)`` half up, Python ints, ``n > 0``."""
    return (2 * v + n) // (2 * n)


def eps_term(eps: float, n: int, e: int) -> int:
    """``round(eps N^2 2^-2e)``, capped at 2^62."""
    return _eps_cached(eps, int(n), int(e))


@functools.lru_cache(maxsize=4096)
def _eps_cached(eps: float, n: int, e: int) -> int:
    en, ed = exact_ratio(eps)
    return min(rshift(en * n * n, (ed.bit_length() - 1) + 2 * e), 1 << 62)


@functools.lru_cache(maxsize=256)
def eps_terms(eps: float, n: int, e: int, top: int) -> np.ndarray:
    """``[eps_term(eps, n, e - k) for k in 0 .. top]`` as a read-only int64 array: the eps term at
    every headroom ``P = k`` a group may take."""
    out = np.array([eps_term(eps, n, e - k) for k in range(top + 1)], np.int64)
    out.flags.writeable = False
    return out


def headroom(d: int, eps0: int) -> int:
    """``P``: ``D 4^P`` and ``eps 4^P`` (``eps0`` its value at ``P = 0``) fit 61 bits, so a
    small variance keeps ~30 significant bits of rsqrt."""
    return max(0, (61 - max(d.bit_length(), eps0.bit_length())) // 2)


def multipliers(mult: np.ndarray, fs: np.ndarray, mbits: int) -> tuple[np.ndarray, int]:
    """Values ``mult_c 2^-f_c`` on one exponent ``g``: int64 ``M_c ~= mult_c 2^(-f_c - g)``, ``|M_c| < 2^mbits``.

    ``mult`` holds Python ints (an object array) or int64; the shifts run in int64 when every
    ``|mult_c| < 2^62`` (``mult_c + 2^(sh-1)`` then fits for ``sh <= 62``; ``sh >= 63`` gives 0,
    as the half-up rounding of ``|mult_c| 2^-sh < 1/2`` does), else on Python ints."""
    vals = [int(v) for v in mult] if mult.dtype == object else None
    if vals is not None and max((abs(v) for v in vals), default=0) < 1 << 62:
        mult, vals = np.array(vals, np.int64), None
    if vals is not None:
        fl = [int(f) for f in fs]
        g = max(abs(v).bit_length() - f for v, f in zip(vals, fl)) - mbits
        return np.array([rshift(v, f + g) for v, f in zip(vals, fl)], np.int64), g
    g = int((bit_length(np.abs(mult)) - fs).max()) - mbits
    sh = fs + g
    left = mult << np.maximum(-sh, 0)
    sr = np.minimum(np.maximum(sh, 1), 62)
    right = (mult + (np.int64(1) << (sr - 1))) >> sr
    return np.where(sh <= 0, left, np.where(sh >= 63, 0, right)), g


def div_rows(v: np.ndarray, n: int, lshift: int) -> np.ndarray:
    """``round((v << lshift) / n)`` half up per element (``div_round``), in int64 when ``2 (v << lshift) + n``
    provably fits (``max|v| < 2^(61 - lshift)``), else on Python ints."""
    if absmax(v) < 1 << (61 - lshift) and n < 1 << 61:
        return (2 * (v << np.int64(lshift)) + np.int64(n)) // np.int64(2 * n)
    return np.array([div_round(int(t) << lshift, n) for t in v], np.int64)

"""Plain Python-int references for the intref tests: one element at a time, no numpy arithmetic.

Each function restates a documented formula of rctc.runtime.intref in the most direct form
(Python ints are unbounded, so nothing here can overflow); the vectorised int64 code must
agree with it bit for bit. Also: test-tensor generators for the parametrised grid.
"""

from __future__ import annotations

import numpy as np

CASES = ("random", "zeros", "saturated", "single", "negative")


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def rshift(x: int, s: int, r: int | None = None) -> int:
    """x / 2^s rounded: half up (r None) or floor((x + r) / 2^s); s <= 0 is an exact multiply."""
    if s <= 0:
        return x * 2 ** (-s)
    if s > 62:
        return 0
    add = 2 ** (s - 1) if r is None else r
    return (x + add) // 2**s  # Python // is floor: the arithmetic shift


def rand_add(word: int, s: int) -> int:
    """The stochastic rounding constant for shift s from one uint32 word."""
    return word // 2 ** (32 - s) if s <= 32 else word * 2 ** (s - 32)


def requant(vals: list[int], e_acc: int, bits: int, words: list[int] | None = None) -> tuple[list[int], int]:
    """Requantise a flat list of ints: smallest s >= 0 whose rounded max fits, then round each."""
    m = max((abs(v) for v in vals), default=0)
    s = 0
    while True:
        if words is None:
            ok = rshift(m, s) <= qmax(bits)
        else:
            ok = m <= qmax(bits) * 2**s
        if ok:
            break
        s += 1
    out = [rshift(v, s, None if words is None else (rand_add(w, s) if s else 0)) for v, w in
           zip(vals, words if words is not None else [0] * len(vals))]
    return out, e_acc + s


def requant_array(acc: np.ndarray, e_acc: int, bits: int, rand: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """:func:`requant` on an array (flattened through Python ints)."""
    vals = [int(v) for v in acc.ravel()]
    words = None if rand is None else [int(w) for w in rand.ravel()]
    out, e = requant(vals, e_acc, bits, words)
    return np.array(out, np.int64).reshape(acc.shape), e


def to_fixed(q: int, e: int, frac: int = 16) -> int:
    """round(q 2^(e+frac)) half up, |x| clamped at 2^24 (real units)."""
    lim = 2**24 * 2**frac
    k = e + frac
    if k > 0:
        return max(-lim, min(lim, q * 2**k))
    return max(-lim, min(lim, rshift(q, -k)))


def tensor(case: str, shape: tuple[int, ...], bits: int, seed: int = 0) -> np.ndarray:
    """A test tensor at ``bits`` bits (int64 values in the symmetric range)."""
    rng = np.random.default_rng(seed)
    m = qmax(bits)
    if case == "zeros":
        return np.zeros(shape, np.int64)
    if case == "saturated":
        return rng.choice([-m, m], size=shape).astype(np.int64)
    if case == "single":
        return rng.integers(-m, m + 1, size=(1,) * len(shape)).astype(np.int64)
    if case == "negative":
        return -rng.integers(1, m + 1, size=shape).astype(np.int64)
    return rng.integers(-m, m + 1, size=shape).astype(np.int64)


def deq(t: tuple[np.ndarray, int]) -> np.ndarray:
    """float64 value of an (int, exponent) pair: test side only."""
    return np.asarray(t[0]).astype(np.float64) * 2.0 ** int(t[1])


def words(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**32, size=shape, dtype=np.uint32)

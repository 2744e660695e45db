"""The C 128-bit floor division (iq_i128.c: 64-bit division of the high word, long division in
32-bit digits of the rest), bit length and integer square root (iq_fixed.c) against Python ints
on a dense grid: dividends of every bit length and both signs, high words just below, at and
above the divisor, divisors of every bit length and the digit patterns that make the quotient
estimate's correction run (low digit all ones, high digit 2^31, ...), squares and their
neighbours for the root."""

from __future__ import annotations

import math

import numpy as np

M64 = (1 << 64) - 1


def _divisors(rng: np.random.Generator) -> list[int]:
    ds = [1, 2, 3, 5, 7, 10, (1 << 31) - 1, 1 << 31, (1 << 31) + 1, (1 << 32) - 1, 1 << 32, (1 << 32) + 1,
          (1 << 63) - 1, 1 << 63, (1 << 63) + 1, M64, M64 - 1, 0x80000000FFFFFFFF, 0x8000000000000001,
          0xFFFFFFFF00000001, 0x00000001FFFFFFFF, 0x7FFFFFFF80000000, 12345678901234567]
    for bl in range(1, 65):  # every bit length, random below it
        lo = 1 << (bl - 1)
        ds += [lo + int(rng.integers(0, lo)) if bl > 1 else 1, (lo << 1) - 1]
    return ds


def _dividends(rng: np.random.Generator, d: int) -> list[int]:
    out = [0, 1, -1, (1 << 127) - 1, -(1 << 127), -(1 << 127) + 1, 1 << 64, (1 << 64) - 1, -(1 << 64)]
    for hi in (d - 1, d, d + 1, 2 * d - 1, d >> 1):  # high words around the divisor (hi < d: one digit pass)
        if 0 <= hi < 1 << 63:
            for lo in (0, 1, M64, M64 - 1, int(rng.integers(0, 1 << 63)) * 2 + 1):
                v = (hi << 64) | lo
                out += [v, -v]
    for bl in range(1, 128, 3):  # every third bit length, both signs
        v = (1 << (bl - 1)) + int(rng.integers(0, 1 << min(bl - 1, 62))) * (1 << max(0, bl - 63))
        out += [v, -v, (1 << bl) - 1]
    q = int(rng.integers(1, 1 << 62))  # exact multiples and their neighbours (remainders 0, 1, d - 1)
    for k in (q * d, (q << 40) * d):
        if k < 1 << 127:
            out += [k, k + 1, k - 1, -k, -k + 1, -k - 1]
    return [v for v in out if -(1 << 127) <= v < 1 << 127]


def test_i128_divfloor_grid(intops) -> None:
    rng = np.random.default_rng(11)
    checked = 0
    for d in _divisors(rng):
        for a in _dividends(rng, d):
            assert intops.i128_divfloor(a, d) == a // d, (a, d)
            checked += 1
    assert checked > 5000


def test_i128_divfloor_random_pairs(intops) -> None:
    rng = np.random.default_rng(12)
    for _ in range(20000):
        bl = int(rng.integers(1, 128))
        a = int.from_bytes(rng.bytes(16), "little") >> (128 - bl)
        a = -a if rng.random() < 0.5 else a
        dbl = int(rng.integers(1, 65))
        d = (int.from_bytes(rng.bytes(8), "little") >> (64 - dbl)) | (1 << (dbl - 1))
        assert intops.i128_divfloor(a, d) == a // d, (a, d)


def test_i128_bitlen_every_length(intops) -> None:
    rng = np.random.default_rng(13)
    for bl in range(0, 128):
        for v in {(1 << bl) - 1, 1 << bl if bl < 127 else 1, (1 << bl) | int(rng.integers(0, 1 << min(bl, 62)))}:
            if v < 1 << 127:
                assert intops.i128_bitlen(v) == v.bit_length(), v
                assert intops.i128_bitlen(-v) == v.bit_length(), -v
    assert intops.i128_bitlen(-(1 << 127)) == 128


def test_isqrt_squares_and_neighbours(intops) -> None:
    rng = np.random.default_rng(14)
    roots = [0, 1, 2, 3, (1 << 32) - 1, (1 << 31), (1 << 31) - 1]
    roots += [int(v) for v in rng.integers(0, 1 << 32, 3000, dtype=np.uint64)]
    for r in roots:
        for v in (r * r - 1, r * r, r * r + 1, r * r + 2 * r, (r + 1) * (r + 1) - 1):
            if 0 <= v <= M64:
                assert intops.isqrt(v) == math.isqrt(v), v
    for v in [M64, M64 - 1, 1 << 63, (1 << 62) - 1] + [int(x) for x in rng.integers(0, M64, 3000, dtype=np.uint64)]:
        assert intops.isqrt(v) == math.isqrt(v), v

"""intref.core: rounding shifts, requantise, alignment, reciprocal and rsqrt against Python ints
and exact rationals; stochastic rounding unbiased."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from rctc.runtime.intref import core
from tests.runtime.intref._plain import CASES, qmax, rand_add, requant_array, rshift, tensor, words


@pytest.mark.parametrize("s", [0, 1, 3, 17, 31, 32, 33, 45, 62, 63, 70])
def test_shift_round_matches_python_ints(s: int) -> None:
    rng = np.random.default_rng(s)
    x = np.concatenate([rng.integers(-(2**40), 2**40, 200), [0, 1, -1, 2**62, -(2**62), 2**s % 2**62]])
    w = words(x.shape, s)
    near = core.shift_round(x, s)
    sto = core.shift_round(x, s, w)
    for i, v in enumerate(x.tolist()):
        assert near[i] == rshift(v, s)
        assert sto[i] == (rshift(v, s, rand_add(int(w[i]), s)) if 0 < s <= 62 else rshift(v, s) if s else v)


def test_shift_round_rejects_overflowing_accumulator() -> None:
    with pytest.raises(OverflowError):
        core.shift_round(np.array([2**62 + 1]), 3)
    with pytest.raises(OverflowError):
        core.shift(np.array([2**40]), 30)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bits", [4, 8, 12, 16])
@pytest.mark.parametrize("acc_bits", [3, 20, 40])
def test_requantize_bit_exact_and_bound(case: str, bits: int, acc_bits: int) -> None:
    acc = tensor(case, (5, 7), acc_bits + 1, seed=acc_bits * bits)
    q, e = core.requantize(acc, -11, bits)
    ref, e_ref = requant_array(acc, -11, bits)
    assert e == e_ref and np.array_equal(q.astype(np.int64), ref)
    assert q.dtype == core.storage_dtype(bits) and np.abs(q.astype(np.int64)).max() <= qmax(bits)
    err = np.abs(q * 2.0**e - acc * 2.0**-11).max()
    assert err <= 2.0 ** (e - 1)
    w = words(acc.shape, 7)
    qs, es = core.requantize(acc, -11, bits, rand=w)
    ref_s, e_s = requant_array(acc, -11, bits, w)
    assert es == e_s and np.array_equal(qs.astype(np.int64), ref_s)
    assert np.abs(qs * 2.0**es - acc * 2.0**-11).max() < 2.0**es


def test_requantize_shift_is_smallest() -> None:
    for m in [0, 1, 126, 127, 128, 254, 255, 256, 381, 382, 10**6]:
        s = core.requant_shift(m, 8, False)
        assert rshift(m, s) <= 127 and (s == 0 or rshift(m, s - 1) > 127)
        t = core.requant_shift(m, 8, True)
        assert m <= 127 * 2**t and (t == 0 or m > 127 * 2 ** (t - 1))


@pytest.mark.parametrize("bias_exp", [-20, -11, -5, 3])
def test_requantize_bias_at_accumulator_exponent(bias_exp: int) -> None:
    acc = tensor("random", (4, 6), 20, seed=1)
    bias = tensor("random", (6,), 8, seed=2)
    q, e = core.requantize(acc, -11, 8, bias=bias, bias_exp=bias_exp)
    aligned = np.array([rshift(int(b), -11 - bias_exp) if bias_exp < -11 else int(b) * 2 ** (bias_exp + 11)
                        for b in bias])
    ref, e_ref = requant_array(acc + aligned, -11, 8)
    assert e == e_ref and np.array_equal(q.astype(np.int64), ref)
    exact = acc * 2.0**-11 + bias * 2.0**bias_exp
    assert np.abs(q * 2.0**e - exact).max() <= 2.0 ** (e - 1) + 2.0**-12


def test_stochastic_requantize_is_unbiased() -> None:
    acc = np.array([[5, -5, 1000, -1001, 77, 3]], np.int64).repeat(20000, axis=0)
    q, e = core.requantize(acc, 0, 4, rand=words(acc.shape, 3))
    mean = (q.astype(np.float64) * 2.0**e).mean(axis=0)
    # standard error of the mean of one draw of spread < 2^e over 20000 draws
    assert np.all(np.abs(mean - acc[0]) < 4 * 2.0**e / math.sqrt(20000))


def test_align_is_exact_with_headroom() -> None:
    a, b = np.array([3, -7]), np.array([100, 5])
    (x, y), e = core.align([(a, 2), (b, -9)])
    assert e == -9 and np.array_equal(x, a * 2**11) and np.array_equal(y, b)
    (x, y), e = core.align([(np.array([2**40]), 0), (np.array([1, 3]), -40)])
    assert x[0] * 2.0**e == 2.0**40 and e == max(-40, 0 - (61 - 41))  # aligned values stay below 2^61
    assert np.array_equal(y, [rshift(1, e + 40), rshift(3, e + 40)])


@pytest.mark.parametrize("d", [1, 2, 3, 7, 9, 49, 1000, 2**20 + 1])
def test_recip_fixed(d: int) -> None:
    r = core.recip_fixed(d, 32)
    assert abs(Fraction(r, 2**32) - Fraction(1, d)) <= Fraction(1, 2**33)


def test_rsqrt_fixed_precision() -> None:
    rng = np.random.default_rng(5)
    vals = [1, 2, 3, 4, 2**61, 2**62 - 1, 2**62, 2**70 + 12345] + [int(v) for v in rng.integers(1, 2**62, 300)]
    for v in vals:
        m, f = core.rsqrt_fixed(v)
        assert 2**31 < m <= 2**32
        rel = abs(Fraction(m, 2**f) * Fraction(math.isqrt(v * 2**100), 2**50) - 1)  # ~ m 2^-f sqrt(v) - 1
        assert rel < Fraction(1, 2**29) + Fraction(1, 2**48)
    with pytest.raises(ValueError):
        core.rsqrt_fixed(0)


def test_fixed_point_constants() -> None:
    assert core.fixed_point(0.5, 4) == 8 and core.fixed_point(-0.01, 24) == -round(0.01 * 2**24)
    assert core.exact_ratio(0.2) == (13421773, 2**26)


def test_rand_must_be_uint32_of_the_shape() -> None:
    with pytest.raises(ValueError):
        core.requantize(np.arange(6), 0, 2, rand=np.zeros(6, np.int64))
    with pytest.raises(ValueError):
        core.requantize(np.arange(6), 0, 2, rand=np.zeros(5, np.uint32))

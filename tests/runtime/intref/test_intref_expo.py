"""intref.expo and intref.gelu: i-exp, log2, Exp, Softmax, Softmax + cross-entropy, Sigmoid,
Tanh, Erf, GELU and their backward rules, bit-exact against per-element Python-int
restatements and within the stated bounds of float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf as f_erf

from rctc.runtime.intref import expo, gelu
from tests.runtime.intref._plain import deq, requant_array, rshift, tensor, to_fixed, words

LN2, A, B, C = 45426, 23495, 88670, 22544
ONE = 2**16
CASES = ("random", "zeros", "saturated", "single", "negative")
GRID = [(c, e) for c in CASES for e in (-7, -4, -1, 1)]


def p_parts(x: int) -> tuple[int, int]:
    z = (-x) // LN2
    t = x + z * LN2 + B
    return z, (A * t * t + C * 2**32 + 2**31) // 2**32


def p_iexp(x: int) -> int:
    z, ep = p_parts(x)
    return rshift(ep, min(z, 62))


def p_sigmoid(x: int) -> int:
    ex = p_iexp(-abs(x))
    den = ONE + ex
    s = (ex * ONE + den // 2) // den
    return ONE - s if x >= 0 else s


def p_tanh(x: int) -> int:
    ex = p_iexp(-2 * abs(x))
    den = ONE + ex
    t = max(((ONE - ex) * ONE + den // 2) // den, 0)
    return t if x > 0 else -t if x < 0 else 0


def _map(fn, q: np.ndarray, e: int) -> np.ndarray:
    return np.array([fn(to_fixed(int(v), e)) for v in q.ravel()], np.int64).reshape(q.shape)


def _q(case: str, e: int, shape=(4, 6)) -> np.ndarray:
    x = tensor(case, shape, 8, abs(e) + 3)
    return np.broadcast_to(x, shape).astype(np.int8).copy()


def test_iexp_and_ilog2_over_every_q16_input() -> None:
    x = -np.arange(0, 12 * ONE + 1)
    got = expo.iexp(x)
    assert all(int(got[i]) == p_iexp(int(x[i])) for i in range(0, x.size, 997))
    z, ep = expo._iexp_parts(x)
    rel = np.abs(ep * 2.0 ** (-16 - z) / np.exp(x / ONE) - 1)
    assert rel.max() <= 3.2e-3
    assert np.all(np.abs(got / ONE - np.exp(x / ONE)) <= 2.0**-17 + 3.2e-3 * np.exp(x / ONE))
    v = np.concatenate([np.arange(1, 5000), np.array([2**31 - 1, 2**40 + 7, 2**62 - 1])])
    lg = expo.ilog2(v)
    assert np.abs(lg / ONE - np.log2(v.astype(np.float64))).max() <= 2.0**-16  # stated < 2^-15
    m = 1 << 62
    near_powers = [2**k + d for k in (30, 31, 52, 53, 54, 61, 62) for d in (-1, 0, 1)] + [2**63 - 1]
    sums = (2**16, 2**16 + 1, 102780, 10 * 2**16 + 3, 2**16 + 2**20 - 1)  # softmax sums
    for val in (1, 2, 3, 1000, 2**33 + 5, *sums, *near_powers):  # plain restatement: leading bit, 16 squarings
        lead = val.bit_length() - 1
        mant = val >> (lead - 30) if lead >= 30 else val << (30 - lead)
        frac = 0
        for _ in range(16):
            mant = mant * mant >> 30
            bit = mant >= 2**31
            mant = mant >> 1 if bit else mant
            frac = 2 * frac + bit
        assert int(expo.ilog2(np.array([val]))[0]) == lead * ONE + frac and mant < m


@pytest.mark.parametrize("case,e", GRID)
@pytest.mark.parametrize("bits", [4, 8])
def test_sigmoid_tanh(case: str, e: int, bits: int) -> None:
    q = _q(case, e)
    x = q * 2.0**e
    d = tensor("random", q.shape, 8, 2).astype(np.int8)
    w = words(q.shape, 3)
    for fn, bwd, plain, real, extra in [
        (expo.sigmoid, expo.sigmoid_backward, p_sigmoid, 1 / (1 + np.exp(-x)), 1e-3),
        (expo.tanh, expo.tanh_backward, p_tanh, np.tanh(x), 2e-3),
    ]:
        y = fn(q, e, bits)
        s = _map(plain, q, e)
        ref = requant_array(s, -16, bits)
        assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
        assert np.abs(deq(y) - real).max() <= 2.0 ** (y[1] - 1) + extra
        dx = bwd(q, e, d, -6, 8, rand=w)
        acc = d.astype(np.int64) * (s * (ONE - s) if fn is expo.sigmoid else ONE * ONE - s * s)
        ref = requant_array(acc, -6 - 32, 8, w)
        assert dx[1] == ref[1] and np.array_equal(dx[0], ref[0])
        deriv = real * (1 - real) if fn is expo.sigmoid else 1 - real**2
        assert np.abs(deq(dx) - d * 2.0**-6 * deriv).max() < 2.0 ** dx[1] + np.abs(d * 2.0**-6).max() * 2 * extra


@pytest.mark.parametrize("case,e", GRID + [("random", 2)])
def test_exp(case: str, e: int) -> None:
    q = _q(case, e)
    x = q * 2.0**e
    y = expo.exp(q, e, 8)
    parts = [p_parts(to_fixed(int(v), e)) for v in q.ravel()]
    zmin = min(z for z, _ in parts)
    acc = np.array([rshift(ep, min(z - zmin, 62)) for z, ep in parts], np.int64).reshape(q.shape)
    ref = requant_array(acc, -16 - zmin, 8)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    tol = 2.0 ** (y[1] - 1) + 2.0 ** (-17 - zmin) + 3.2e-3 * np.exp(x)
    assert np.all(np.abs(deq(y) - np.exp(x)) <= tol)
    d = tensor("random", q.shape, 8, 5).astype(np.int8)
    dx = expo.exp_backward(q, e, d, -5, 8)
    ref = requant_array(d.astype(np.int64) * acc, -5 - 16 - zmin, 8)
    assert dx[1] == ref[1] and np.array_equal(dx[0], ref[0])
    assert np.all(np.abs(deq(dx) - d * 2.0**-5 * np.exp(x)) <= 2.0 ** (dx[1] - 1) + np.abs(d * 2.0**-5) * tol)


def _softmax_plain(q: np.ndarray, e: int):
    rows = []
    for r in q.astype(np.int64):
        mx = int(r.max())
        ex = [p_iexp(to_fixed(int(v) - mx, e)) for v in r]
        s = sum(ex)
        rows.append((ex, s, (2**46 + s // 2) // s, mx))
    return rows


def _f_softmax(x: np.ndarray) -> np.ndarray:
    p = np.exp(x - x.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("case,e", GRID + [("random", -10)])
@pytest.mark.parametrize("bits", [4, 8])
def test_softmax_and_backward(case: str, e: int, bits: int) -> None:
    q = _q(case, e, (5, 7))
    y = expo.softmax(q, e, -1, bits)
    acc = np.array([[v * r for v in ex] for ex, _, r, _ in _softmax_plain(q, e)], np.int64)
    ref = requant_array(acc, -46, bits)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    p = _f_softmax(q * 2.0**e)
    assert np.abs(deq(y) - p).max() <= 2.0 ** (y[1] - 1) + 1e-3  # stated 4e-3
    d = tensor("random", q.shape, 8, 6).astype(np.int8)
    w = words(q.shape, 7)
    dx = expo.softmax_backward(y[0], y[1], d, -6, -1, 8, rand=w)
    yi, di = y[0].astype(np.int64), d.astype(np.int64)
    s = (yi * di).sum(axis=1, keepdims=True)
    ref = requant_array(yi * ((di << -y[1]) - s), -6 + 2 * y[1], 8, w)
    assert dx[1] == ref[1] and np.array_equal(dx[0], ref[0])
    yf, df = deq(y), d * 2.0**-6
    exact = yf * (df - (df * yf).sum(axis=1, keepdims=True))  # the rule on the stored output: exact
    assert np.abs(deq(dx) - exact).max() < 2.0 ** dx[1]
    true = p * (df - (df * p).sum(axis=1, keepdims=True))  # vs the float softmax: y's own rounding
    assert np.abs(deq(dx) - true).max() < 2.0 ** dx[1] + 3 * np.abs(df).max() * (2.0 ** (y[1] - 1) + 1e-3)


@pytest.mark.parametrize("ey", [-16, -7, -1, 0, 3, 16, 17, -17])
@pytest.mark.parametrize("row", [1, 16, 511, 600])
def test_softmax_backward_int32_path_equals_the_int64_rule(ey: int, row: int) -> None:
    """8-bit y and dy on both sides of the int32 bounds (row length, |ey|), extremes included:
    the same integers as the int64 rule ``y ((dy << k) - (sum dy y << k'))``, one rounding."""
    rng = np.random.default_rng(row + 40 * (ey + 17))
    y = rng.integers(-128, 128, (3, row)).astype(np.int8)
    d = rng.integers(-128, 128, (3, row)).astype(np.int8)
    y[0], d[0] = -128, -128  # the dtype bounds the int32 check rests on
    w = words(y.shape, 9)
    yi, di = y.astype(np.int64), d.astype(np.int64)
    s = (yi * di).sum(axis=1, keepdims=True)
    acc = yi * ((di << -ey) - s) if ey < 0 else yi * (di - (s << ey))
    for rand in (None, w):
        ref = requant_array(acc, -6 + min(0, ey) + ey, 8, rand)
        got = expo.softmax_backward(y, ey, d, -6, -1, 8, rand=rand)
        assert got[1] == ref[1] and np.array_equal(got[0], ref[0])


@pytest.mark.parametrize("case,e", GRID + [("random", -10)])
def test_softmax_cross_entropy(case: str, e: int) -> None:
    q = _q(case, e, (6, 5))
    lab = np.random.default_rng(abs(e)).integers(0, 5, 6)
    loss, le = expo.softmax_cross_entropy(q, e, lab)
    tot = 0
    for (_, s, _, mx), r, lb in zip(_softmax_plain(q, e), q.astype(np.int64), lab):
        lg = int(expo.ilog2(np.array([s]))[0]) - 16 * ONE
        tot += (lg * 2977044472 + 2**31) // 2**32 + to_fixed(mx - int(r[lb]), e)
    assert le == -16 and loss == (2 * tot + 6) // 12
    x = q * 2.0**e
    ref = np.mean(-np.log(_f_softmax(x)[np.arange(6), lab]))
    assert abs(loss * 2.0**le - ref) <= 3.3e-3 + 2.0**-14
    w = words(q.shape, 4)
    g = expo.softmax_cross_entropy_backward(q, e, lab, 8, rand=w)
    p30 = np.array([[(v * r + 2**15) >> 16 for v in ex] for ex, _, r, _ in _softmax_plain(q, e)], np.int64)
    p30[np.arange(6), lab] -= 2**30
    ref = requant_array(p30 * ((2**24 + 3) // 6), -54, 8, w)
    assert g[1] == ref[1] and np.array_equal(g[0], ref[0])
    exact = (_f_softmax(x) - np.eye(5)[lab]) / 6
    assert np.abs(deq(g) - exact).max() < 2.0 ** g[1] + 4e-3 / 6


def test_cross_entropy_backward_stochastic_unbiased() -> None:
    q = np.array([[10, -3, 40, 0]], np.int8)
    lab = np.array([2])
    draws = np.stack([deq(expo.softmax_cross_entropy_backward(q, -4, lab, 3, rand=words(q.shape, s)))
                      for s in range(3000)])
    p30 = expo.softmax_cross_entropy_backward(q, -4, lab, 24)  # 24 bits: the unrounded value to 2^-20
    step = 2.0 ** expo.softmax_cross_entropy_backward(q, -4, lab, 3)[1]
    assert np.all(np.abs(draws.mean(axis=0) - deq(p30)) < 4 * step / math.sqrt(3000))


def p_ierf(u: int) -> int:
    c = min(abs(u), 115933) - 115933
    mag = (-18927 * c * c + 2**31) // 2**32 + ONE
    return mag if u > 0 else -mag if u < 0 else 0


def p_gauss(x: int, half: bool) -> int:
    xc = max(-16 * ONE, min(16 * ONE, x))
    return p_iexp(-((xc * xc + 2 ** (15 + half)) // 2 ** (16 + half)))


def p_erf_as(u: int) -> int:
    a = min(abs(u), 16 * ONE)
    den = ONE + (21469 * a + 2**15) // ONE
    t = (2**46 + den // 2) // den
    h = gelu.AS_A[4]
    for c in gelu.AS_A[3::-1]:
        h = c + (h * t + 2**29) // 2**30
    poly = (h * t + 2**29) // 2**30
    mag = ONE - (poly * p_gauss(a, False) + 2**29) // 2**30
    return mag if u > 0 else -mag if u < 0 else 0


def _scaled(x: int) -> int:
    return (max(-16 * ONE, min(16 * ONE, x)) * 46341 + 2**15) // ONE


@pytest.mark.parametrize("case,e", GRID)
def test_erf_gelu(case: str, e: int) -> None:
    q = _q(case, e)
    x = q * 2.0**e
    y = gelu.erf(q, e, 8)
    ref = requant_array(_map(p_erf_as, q, e), -16, 8)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    assert np.abs(deq(y) - f_erf(x)).max() <= 2.0 ** (y[1] - 1) + 2e-3
    g = gelu.gelu(q, e, 8)
    lv = _map(lambda v: p_ierf(_scaled(v)), q, e)
    ref = requant_array(q.astype(np.int64) * (ONE + lv), e - 17, 8)
    assert g[1] == ref[1] and np.array_equal(g[0], ref[0])
    assert np.abs(deq(g) - x / 2 * (1 + f_erf(x / np.sqrt(2)))).max() <= 2.0 ** (g[1] - 1) + 0.019
    ga = gelu.gelu(q, e, 8, "as")
    ref = requant_array(q.astype(np.int64) * (ONE + _map(lambda v: p_erf_as(_scaled(v)), q, e)), e - 17, 8)
    assert ga[1] == ref[1] and np.array_equal(ga[0], ref[0])
    gtrue = x / 2 * (1 + f_erf(x / np.sqrt(2)))
    assert np.all(np.abs(deq(ga) - gtrue) <= 2.0 ** (ga[1] - 1) + np.abs(x) * 1e-3 + 2.0**-17 * np.abs(x))
    d = tensor("random", q.shape, 8, 9).astype(np.int8)
    w = words(q.shape, 2)
    de = gelu.erf_backward(q, e, d, -7, 8, rand=w)
    gd = _map(lambda v: (73949 * p_gauss(v, False) + 2**15) // ONE, q, e)
    ref = requant_array(d.astype(np.int64) * gd, -7 - 16, 8, w)
    assert de[1] == ref[1] and np.array_equal(de[0], ref[0])
    df = d * 2.0**-7
    assert np.abs(deq(de) - df * 2 / np.sqrt(np.pi) * np.exp(-x * x)).max() < 2.0 ** de[1] + np.abs(df).max() * 5e-3
    dg = gelu.gelu_backward(q, e, d, -7, 8, rand=w)

    def p_dgelu(v: int) -> int:
        xc = max(-16 * ONE, min(16 * ONE, v))
        xphi = (xc * (26145 * p_gauss(v, True)) + 2**30) // 2**31
        return ONE + p_erf_as(_scaled(v)) + xphi

    ref = requant_array(d.astype(np.int64) * _map(p_dgelu, q, e), -7 - 17, 8, w)
    assert dg[1] == ref[1] and np.array_equal(dg[0], ref[0])
    dtrue = 0.5 * (1 + f_erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)
    assert np.abs(deq(dg) - df * dtrue).max() < 2.0 ** dg[1] + np.abs(df).max() * 5e-3


def test_ilog2_thresholds_give_the_rounds_integers() -> None:
    """ilog2 (a binary search of the thresholds) equals the 16 rounds: at every threshold and one
    below it, on random values of every magnitude, on softmax-sum-like values and shapes."""
    t = expo._log2_thresholds()
    assert t.shape == (2**16 - 1,) and np.all(np.diff(t) >= 0) and t[0] >= 2**30 and t[-1] <= 2**31
    j = np.arange(1, 2**16)
    reached = t < 2**31
    assert np.all(expo._frac_rounds(t[reached]) >= j[reached])  # t_j reaches j ...
    below = np.maximum(t - 1, 2**30)
    assert np.all((expo._frac_rounds(below) < j) | (t == 2**30))  # ... and one less does not
    assert np.all(expo._frac_rounds(np.array([2**31 - 1])) < j[~reached])  # none reaches these
    for m in (t[reached], below, np.array([2**30, 2**31 - 1])):
        assert np.array_equal(expo.ilog2(m), expo._ilog2_rounds(m))
    rng = np.random.default_rng(7)
    v = np.maximum(rng.integers(1, 2**62, 20000) >> rng.integers(0, 62, 20000), 1)
    for arr in (v, rng.integers(2**16, 10 * 2**16, (4, 8)), np.array([1, 2, 3, 2**63 - 1])):
        got = expo.ilog2(arr)
        assert got.dtype == np.int64 and got.shape == arr.shape
        assert np.array_equal(got, expo._ilog2_rounds(arr))
    with pytest.raises(ValueError, match="positive"):
        expo.ilog2(np.array([2**16, 0]))

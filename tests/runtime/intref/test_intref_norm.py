"""intref.norm: BatchNormalization (training, running state, inference, backward) and
LayerNormalization (forward, backward) against a per-group Python-int restatement of the
documented formulas, and against float64 (forward values, derivatives)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from rctc.runtime.intref import norm
from tests.runtime.intref._plain import deq, requant_array, rshift, tensor, words

EPS = 1e-5


def _rsqrt(v: int) -> tuple[int, int]:
    k = (62 - v.bit_length()) // 2
    s = math.isqrt(v * 4**k if k >= 0 else v // 4 ** (-k))
    return (2**62 + s // 2) // s, 62 - k


def _eps(n: int, e: int) -> int:
    f = Fraction(float(np.float32(EPS))) * n * n / Fraction(2) ** (2 * e)
    return min(math.floor(f * 2 + 1) // 2, 2**62)  # round half up of the exact value


def _plain_group(vals: list[int], e: int):
    """(xhat list Q16, m, f, S1, D) for one group, Python ints."""
    n = len(vals)
    s1, s2 = sum(vals), sum(v * v for v in vals)
    d = n * s2 - s1 * s1
    p = max(0, (61 - max(d.bit_length(), _eps(n, e).bit_length())) // 2)
    m, f = _rsqrt(max(d * 4**p + _eps(n, e - p), 1))
    return [rshift((n * v - s1) * m, f - p - 16) for v in vals], m, f - p, s1, d


def _float_bn(x: np.ndarray, axes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + float(np.float32(EPS))), mu, var


def _case(case: str, shape, bits: int, seed: int) -> np.ndarray:
    x = tensor(case, shape, bits, seed)
    return np.broadcast_to(x, shape).copy().astype(np.int8 if bits <= 8 else np.int16)


CASES = ("random", "zeros", "saturated", "negative", "constant")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("e", [-6, -2, 1])
@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (16, 2), (1, 2, 5, 1), (32, 3, 4, 4)])
def test_batchnorm_train(case: str, e: int, shape) -> None:
    """(32, 3, 4, 4): large enough that xhat and y come from per-channel tables (norm._Xhat)."""
    x = _case("single" if case == "constant" else case, shape, 8, 1)
    c = shape[1]
    gam = (tensor("random", (c,), 8, 2).astype(np.int8), -6)
    bet = (tensor("random", (c,), 8, 3).astype(np.int8), -5)
    rm = (tensor("random", (c,), 16, 4).astype(np.int16), -14)
    rv = (np.abs(tensor("random", (c,), 16, 5)).astype(np.int16), -12)
    y, nrm, nrv = norm.batchnorm_train(x, e, gam, bet, rm, rv, EPS, 0.9, 8)
    rows = np.moveaxis(x.astype(np.int64), 1, 0).reshape(c, -1)
    n = rows.shape[1]
    acc = np.zeros(rows.shape, np.int64)
    mean_acc, var_acc = [], []
    for ch in range(c):
        xh, m, f, s1, d = _plain_group([int(v) for v in rows[ch]], e)
        shift_b = -5 - (-6 - 16)  # beta at -5 brought to the accumulator's exponent -22
        acc[ch] = [int(gam[0][ch]) * h + int(bet[0][ch]) * 2**shift_b for h in xh]
        mean_acc.append((2 * (s1 << 16) + n) // (2 * n))
        var_acc.append((2 * (d << 16) + n * n) // (2 * n * n))
    acc = np.moveaxis(acc.reshape((c, shape[0]) + shape[2:]), 0, 1)
    ref = requant_array(acc, -22, 8)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    xf = x * 2.0**e
    axes = (0,) + tuple(range(2, x.ndim))
    xh, mu, var = _float_bn(xf, axes)
    shp = (1, c) + (1,) * (x.ndim - 2)
    real = deq(gam).reshape(shp) * xh + deq(bet).reshape(shp)
    assert np.abs(deq(y) - real).max() <= 2.0 ** (y[1] - 1) + np.abs(deq(gam)).max() * 2.0**-16
    # running state: (MU r + (2^16 - MU) b) / 2^16, one rounding to 16 bits
    mu_q = round(0.9 * 2**16)
    for st, new, b_acc, eb in [(rm, nrm, mean_acc, e - 16), (rv, nrv, var_acc, 2 * e - 16)]:
        ec = min(st[1], eb)
        tot = np.array([int(o) * 2 ** (st[1] - ec) * mu_q + bb * 2 ** (eb - ec) * (2**16 - mu_q)
                        for o, bb in zip(st[0], b_acc)], np.int64)
        sref = requant_array(tot, ec - 16, 16)
        assert new[1] == sref[1] and np.array_equal(new[0], sref[0]) and new[0].dtype == np.int16
    mf = mu_q / 2**16  # the fixed-point momentum (its own rounding, 2^-17, is the constant's)
    exp_m = mf * deq(rm) + (1 - mf) * mu.ravel()
    exp_v = mf * deq(rv) + (1 - mf) * var.ravel()
    assert np.abs(deq(nrm) - exp_m).max() <= 2.0 ** (nrm[1] - 1) + 2.0 ** (e - 17)
    assert np.abs(deq(nrv) - exp_v).max() <= 2.0 ** (nrv[1] - 1) + 2.0 ** (2 * e - 17)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("e,de", [(-6, -9), (0, -3)])
@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (16, 2), (32, 3, 4, 4)])
def test_batchnorm_backward(case: str, e: int, de: int, shape) -> None:
    x = _case("single" if case == "constant" else case, shape, 8, 7)
    c = shape[1]
    gam = (tensor("random", (c,), 8, 2).astype(np.int8), -6)
    d = tensor("random", shape, 8, 8).astype(np.int8)
    w = words(shape, 9)
    (dx, edx), (dg, eg), (db, eb) = norm.batchnorm_backward(x, e, gam, d, de, EPS, 8, rand=w)
    axes = (0,) + tuple(range(2, x.ndim))
    xf, df = x * 2.0**e, d * 2.0**de
    xh, mu, var = _float_bn(xf, axes)
    shp = (1, c) + (1,) * (x.ndim - 2)
    g = deq(gam).reshape(shp)
    dx_real = g / np.sqrt(var + float(np.float32(EPS))) * (
        df - df.mean(axis=axes, keepdims=True) - xh * (df * xh).mean(axis=axes, keepdims=True))
    assert eb == de and np.array_equal(db, d.astype(np.int64).sum(axis=axes))
    assert np.abs(dg * 2.0**eg - (df * xh).sum(axis=axes)).max() <= np.abs(df).sum(axis=axes).max() * 2.0**-16
    # stochastic rounding: error < one output step (+ the Q16 roundings inside, relative 2^-15)
    assert np.abs(deq((dx, edx)) - dx_real).max() < 2.0**edx + 2.0**-14 * np.abs(dx_real).max() + 1e-12
    # bit-exact against the per-group restatement
    rows = np.moveaxis(x.astype(np.int64), 1, 0).reshape(c, -1)
    drows = np.moveaxis(d.astype(np.int64), 1, 0).reshape(c, -1)
    n = rows.shape[1]
    inner, mults = [], []
    for ch in range(c):
        xhq, m, f, _, _ = _plain_group([int(v) for v in rows[ch]], e)
        dl = [int(v) for v in drows[ch]]
        m1 = (2 * (sum(dl) << 16) + n) // (2 * n)
        m2 = (2 * sum(a * b for a, b in zip(dl, xhq)) + n) // (2 * n)
        inner.append([(a << 16) - m1 - rshift(h * m2, 16) for a, h in zip(dl, xhq)])
        mults.append((int(gam[0][ch]) * n * m, f))
    mbits = min(31, 61 - max(abs(v) for r in inner for v in r).bit_length())
    gsh = max(abs(v).bit_length() - f for v, f in mults) - mbits
    acc = np.array([[v * rshift(mv, f + gsh) for v in r] for r, (mv, f) in zip(inner, mults)], np.int64)
    acc = np.moveaxis(acc.reshape((c, shape[0]) + shape[2:]), 0, 1)
    ref = requant_array(acc, de + gam[1] - e + gsh - 16, 8, w)
    assert edx == ref[1] and np.array_equal(dx, ref[0])


@pytest.mark.parametrize("case", ("random", "saturated", "negative"))
def test_batchnorm_inference(case: str) -> None:
    x = _case(case, (4, 3, 2, 2), 8, 3)
    gam = (tensor("random", (3,), 8, 2).astype(np.int8), -6)
    bet = (tensor("random", (3,), 8, 3).astype(np.int8), -5)
    for rv_e in (-11, -12):
        rm = (tensor("random", (3,), 16, 4).astype(np.int16), -14)
        rv = (np.abs(tensor("random", (3,), 16, 5)).astype(np.int16), rv_e)
        y = norm.batchnorm_inference(x, -4, gam, bet, rm, rv, EPS, 8)
        shp = (1, 3, 1, 1)
        real = deq(gam).reshape(shp) * (x * 2.0**-4 - deq(rm).reshape(shp)) / np.sqrt(
            deq(rv).reshape(shp) + float(np.float32(EPS))) + deq(bet).reshape(shp)
        assert np.abs(deq(y) - real).max() <= 2.0 ** (y[1] - 1) + 2.0**-20 * np.abs(real).max() + 2.0**-12


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape,axis", [((6, 8), -1), ((2, 3, 10), -1), ((2, 3, 4), 1)])
def test_layernorm(case: str, shape, axis: int) -> None:
    x = _case("single" if case == "constant" else case, shape, 8, 4)
    nshape = shape[axis % len(shape):]
    gam = (tensor("random", nshape, 8, 5).astype(np.int8), -6)
    bet = (tensor("random", nshape, 8, 6).astype(np.int8), -7)
    y = norm.layernorm(x, -3, gam, bet, axis, EPS, 8)
    rows = x.astype(np.int64).reshape(-1, math.prod(nshape))
    gl, bl = gam[0].ravel().astype(np.int64), bet[0].ravel().astype(np.int64)
    acc = np.array([[int(gl[i]) * h + int(bl[i]) * 2 ** (-7 + 22) for i, h in
                     enumerate(_plain_group([int(v) for v in r], -3)[0])] for r in rows], np.int64)
    ref = requant_array(acc.reshape(shape), -22, 8)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    axes = tuple(range(axis % len(shape), len(shape)))
    xh, _, _ = _float_bn(x * 2.0**-3, axes)
    real = deq(gam) * xh + deq(bet)
    assert np.abs(deq(y) - real).max() <= 2.0 ** (y[1] - 1) + np.abs(deq(gam)).max() * 2.0**-16
    d = tensor("random", shape, 8, 8).astype(np.int8)
    (dx, edx), (dg, eg), (db, eb) = norm.layernorm_backward(x, -3, gam, d, -8, axis, EPS, 8)
    df = d * 2.0**-8
    gx = df * deq(gam)
    var = (x * 2.0**-3).var(axis=axes, keepdims=True)
    dx_real = (gx - gx.mean(axis=axes, keepdims=True) - xh * (gx * xh).mean(axis=axes, keepdims=True)) / np.sqrt(
        var + float(np.float32(EPS)))
    assert np.abs(deq((dx, edx)) - dx_real).max() <= 2.0 ** (edx - 1) + 2.0**-12 * np.abs(dx_real).max() + 1e-12
    lead = tuple(range(len(shape) - len(nshape)))
    assert eb == -8 and np.array_equal(db, d.astype(np.int64).sum(axis=lead))
    assert np.abs(dg * 2.0**eg - (df * xh).sum(axis=lead)).max() <= np.abs(df).sum(axis=lead).max() * 2.0**-16


def test_group_size_bound_is_checked() -> None:
    with pytest.raises(OverflowError):
        norm.layernorm(np.full((1, 2**23), 100, np.int8), 0, (np.ones(2**23, np.int8), 0),
                       (np.zeros(2**23, np.int8), 0))

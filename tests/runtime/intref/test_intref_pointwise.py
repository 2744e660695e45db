"""intref.pointwise: ReLU, Clip, LeakyReLU, HardSigmoid, HardSwish, forward and backward:
bit-exact against per-element Python-int / Fraction references, error against float64."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from rctc.runtime.intref import pointwise as pw
from tests.runtime.intref._plain import CASES, deq, requant_array, tensor, words

EXPS = [-9, -4, 0, 2]
GRID = [(c, e, b) for c in CASES for e in EXPS for b in (4, 8)]


def _x(case: str, bits: int, seed: int = 0) -> np.ndarray:
    return tensor(case, (3, 5), bits, seed).astype(np.int8 if bits <= 8 else np.int16)


def _floor(v: Fraction) -> int:
    return math.floor(v)


@pytest.mark.parametrize("case,e,bits", GRID)
def test_relu_and_clip_exact(case: str, e: int, bits: int) -> None:
    q = _x(case, bits)
    y, ey = pw.relu(q, e)
    assert ey == e and np.array_equal(y, [[max(int(v), 0) for v in r] for r in q])
    assert np.array_equal(pw.relu_backward(q, e, q, -3)[0], np.where(q > 0, q, 0))
    for lo, hi in [(0.0, 6.0), (-0.3, 0.7), (None, 1.1), (-2.5, None)]:
        c, ec = pw.clip(q, e, lo, hi)
        lq = None if lo is None else math.ceil(Fraction(float(np.float32(lo))) / Fraction(2) ** e)
        hq = None if hi is None else math.floor(Fraction(float(np.float32(hi))) / Fraction(2) ** e)
        ref = [[min(max(int(v), lq if lq is not None else -999), hq if hq is not None else 999) for v in r] for r in q]
        assert ec == e and np.array_equal(c, ref)
        real = np.clip(q * 2.0**e, -np.inf if lo is None else lo, np.inf if hi is None else hi)
        assert np.abs(deq((c, ec)) - real).max() < 2.0**e  # inward bounds: within one step
        keep = np.ones(q.shape, bool) if lq is None else q >= lq
        keep &= True if hq is None else q <= hq
        d = tensor("random", q.shape, 8, 3).astype(np.int8)
        assert np.array_equal(pw.clip_backward(q, e, d, -5, lo, hi)[0], np.where(keep, d, 0))


@pytest.mark.parametrize("case,e,bits", GRID)
@pytest.mark.parametrize("alpha", [0.01, 0.2])
def test_leaky_relu(case: str, e: int, bits: int, alpha: float) -> None:
    q = _x(case, bits)
    a = round(Fraction(alpha) * 2**24)
    y = pw.leaky_relu(q, e, alpha, bits)
    acc = np.array([[int(v) * 2**24 if v >= 0 else int(v) * a for v in r] for r in q], np.int64)
    ref = requant_array(acc, e - 24, bits)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    x = q * 2.0**e
    assert np.all(np.abs(deq(y) - np.where(x >= 0, x, alpha * x)) <= 2.0 ** (y[1] - 1) + np.abs(x) * 2.0**-25)
    d = tensor("random", q.shape, 8, 4).astype(np.int8)
    w = words(q.shape, 1)
    dx = pw.leaky_relu_backward(q, e, d, -6, alpha, 8, rand=w)
    acc = np.array([[int(g) * 2**24 if v > 0 else int(g) * a for v, g in zip(r, s)] for r, s in zip(q, d)], np.int64)
    ref = requant_array(acc, -30, 8, w)
    assert dx[1] == ref[1] and np.array_equal(dx[0], ref[0])
    exact = d * 2.0**-6 * np.where(x > 0, 1.0, alpha)
    assert np.all(np.abs(deq(dx) - exact) < 2.0 ** dx[1] + np.abs(d) * 2.0**-31)


def test_leaky_backward_stochastic_unbiased() -> None:
    q = np.array([-5, -1, 3, -100], np.int8)
    d = np.array([7, -3, 5, 1], np.int8)
    draws = np.stack([deq(pw.leaky_relu_backward(q, 0, d, 0, 0.1, 2, rand=words(q.shape, s))) for s in range(4000)])
    exact = d * np.where(q > 0, 1.0, float(Fraction(round(Fraction(0.1) * 2**24), 2**24)))
    spread = 2.0 ** pw.leaky_relu_backward(q, 0, d, 0, 0.1, 2)[1]
    assert np.all(np.abs(draws.mean(axis=0) - exact) < 4 * spread / math.sqrt(4000))


@pytest.mark.parametrize("case,e,bits", GRID)
@pytest.mark.parametrize("alpha,beta", [(0.2, 0.5), (1 / 6, 0.5)])
def test_hardsigmoid(case: str, e: int, bits: int, alpha: float, beta: float) -> None:
    q = _x(case, bits)
    fa, fb = Fraction(float(np.float32(alpha))), Fraction(float(np.float32(beta)))
    y = pw.hardsigmoid(q, e, alpha, beta, bits)
    vals = [[min(max(fa * int(v) * Fraction(2) ** e + fb, Fraction(0)), Fraction(1)) for v in r] for r in q]
    ref = requant_array(np.array([[_floor(v * 2**24) for v in r] for r in vals], np.int64), -24, bits)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    real = np.clip(float(fa) * q * 2.0**e + float(fb), 0, 1)
    assert np.abs(deq(y) - real).max() <= 2.0 ** (y[1] - 1) + 2.0**-24
    d = tensor("random", q.shape, 8, 5).astype(np.int8)
    dx = pw.hardsigmoid_backward(q, e, d, -4, alpha, beta, 8)
    inside = [[Fraction(0) < fa * int(v) * Fraction(2) ** e + fb < Fraction(1) for v in r] for r in q]
    exact = np.where(inside, float(fa) * d * 2.0**-4, 0.0)
    assert np.abs(deq(dx) - exact).max() <= 2.0 ** (dx[1] - 1)


@pytest.mark.parametrize("case,e,bits", GRID)
def test_hardswish(case: str, e: int, bits: int) -> None:
    q = _x(case, bits)
    sh = max(-e, 0)
    y = pw.hardswish(q, e, bits)
    xs = [[Fraction(int(v)) * Fraction(2) ** e for v in r] for r in q]
    vals = [[v * min(max(v + 3, Fraction(0)), Fraction(6)) / 6 for v in r] for r in xs]
    ref = requant_array(np.array([[_floor(v * 2 ** (2 * sh + 24)) for v in r] for r in vals], np.int64),
                        -2 * sh - 24, bits)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    x = q * 2.0**e
    assert np.abs(deq(y) - x * np.clip(x / 6 + 0.5, 0, 1)).max() <= 2.0 ** (y[1] - 1) + 2.0 ** (-2 * sh - 24)
    d = tensor("random", q.shape, 8, 6).astype(np.int8)
    dx = pw.hardswish_backward(q, e, d, -4, 8)
    slope = np.where(x >= 3, 1.0, np.where(x > -3, (2 * x + 3) / 6, 0.0))
    assert np.all(np.abs(deq(dx) - d * 2.0**-4 * slope) <= 2.0 ** (dx[1] - 1) + np.abs(d) * 2.0 ** (-4 - 24))


def test_overflowing_exact_products_are_refused() -> None:
    with pytest.raises(OverflowError):
        pw.hardswish(np.array([127], np.int8), -40)
    with pytest.raises(OverflowError):
        pw.hardsigmoid(np.array([127], np.int8), -60)

"""intref.pool: MaxPool (exact, first-max ties), AveragePool / GlobalAveragePool / ReduceMean
(integer sum times a fixed-point reciprocal), forward and backward, against window loops over
Python ints and against float64."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rctc.runtime.intref import pool
from tests.runtime.intref._plain import CASES, deq, requant_array, tensor, words

GEOMS = [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (1, 1), (1, 1, 1, 1)), ((3, 2), (2, 1), (0, 1, 1, 0)),
         ((1, 1), (1, 1), (0, 0, 0, 0)), ((2, 3), (2, 3), (0, 0, 0, 0))]
R32 = 2**32


def _windows(shape, k, s, p):
    """Yield (oh, ow, [(h, w) in-range positions], count_with_pad) per output position."""
    h, w = shape[2:]
    oh = (h + p[0] + p[2] - k[0]) // s[0] + 1
    ow = (w + p[1] + p[3] - k[1]) // s[1] + 1
    for i in range(oh):
        for j in range(ow):
            pos = [(i * s[0] + a - p[0], j * s[1] + b - p[1]) for a in range(k[0]) for b in range(k[1])]
            yield i, j, [(r, c) for r, c in pos if 0 <= r < h and 0 <= c < w], k[0] * k[1]


def _x(case: str, shape=(2, 3, 5, 6), bits: int = 8) -> np.ndarray:
    x = tensor(case, shape, bits, 11)
    return np.broadcast_to(x, shape).astype(np.int8).copy() if case == "single" else x.astype(np.int8)


@pytest.mark.parametrize("case", CASES + ("ties",))
@pytest.mark.parametrize("k,s,p", GEOMS)
def test_maxpool(case: str, k, s, p) -> None:
    x = np.random.default_rng(2).integers(-2, 3, (2, 3, 5, 6)).astype(np.int8) if case == "ties" else _x(case)
    y, e = pool.maxpool2d(x, -3, k, s, p)
    d = tensor("random", y.shape, 8, 5).astype(np.int8)
    w = words(x.shape, 4)
    dx, de = pool.maxpool2d_backward(x, -3, d, -7, k, s, p, 8, rand=w)
    acc = np.zeros(x.shape, np.int64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i, j, pos, _ in _windows(x.shape, k, s, p):
                vals = [int(x[n, c, r, cc]) for r, cc in pos]
                best = max(vals)
                assert y[n, c, i, j] == best
                r, cc = pos[vals.index(best)]  # the first maximum in row-major window order
                acc[n, c, r, cc] += int(d[n, c, i, j])
    assert e == -3
    ref = requant_array(acc, -7, 8, w)
    assert de == ref[1] and np.array_equal(dx, ref[0])
    if s[0] >= k[0] and s[1] >= k[1]:
        assert de == -7 and np.array_equal(deq((dx, de)), acc * 2.0**-7)  # no overlap: exact


@pytest.mark.parametrize("k", [(2, 2), (3, 3), (2, 3), (1, 2), (4, 4)])
@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (3, 2, 8, 8), (1, 1, 3, 3), (2, 1, 9, 7)])
@pytest.mark.parametrize("qdt,ddt,bits", [(np.int8, np.int8, 8), (np.int8, np.int16, 4), (np.int16, np.int8, 8),
                                          (np.int32, np.int16, 12), (np.int64, np.int64, 8)])
def test_maxpool_tiling_path_matches_general(monkeypatch, k, shape, qdt, ddt, bits) -> None:
    """The tiling windows' gather path (stride = kernel, no pads) against the general tap loops,
    bit for bit: values (ties heavy: few distinct inputs), dtypes, exponent, the stochastic words."""
    rng = np.random.default_rng(sum(shape) + 7 * k[0] + k[1] + bits)
    hi = {np.int8: 127, np.int16: 30000, np.int32: 1 << 30, np.int64: 1 << 40}
    x = rng.choice(np.array([-hi[qdt], -1, 0, 0, 2, 3, hi[qdt]], np.int64), size=shape).astype(qdt)
    if x.shape[2] >= k[0] and x.shape[3] >= k[1]:
        assert pool._tiling(x, k, k, (0, 0, 0, 0))
    oh, ow = shape[2] // k[0], shape[3] // k[1]
    d = rng.integers(-hi[ddt] // 2, hi[ddt] // 2, (*shape[:2], oh, ow)).astype(ddt)
    w = words(x.shape, 3)
    fast = pool.maxpool2d(x, -3, k, k), pool.maxpool2d_backward(x, -3, d, -7, k, k, (0, 0, 0, 0), bits, rand=w)
    monkeypatch.setattr(pool, "_tiling", lambda *a: False)
    slow = pool.maxpool2d(x, -3, k, k), pool.maxpool2d_backward(x, -3, d, -7, k, k, (0, 0, 0, 0), bits, rand=w)
    for (fq, fe), (sq, se) in zip(fast, slow):
        assert fe == se and fq.dtype == sq.dtype and np.array_equal(fq, sq)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("k,s,p", GEOMS)
@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize("bits", [4, 8])
def test_avgpool(case: str, k, s, p, include_pad: bool, bits: int) -> None:
    x = _x(case)
    y, e = pool.avgpool2d(x, -5, k, s, p, include_pad, bits)
    d = tensor("random", y.shape, 8, 6).astype(np.int8)
    w = words(x.shape, 8)
    dx, de = pool.avgpool2d_backward(d, -9, x.shape, k, s, p, include_pad, 8, rand=w)
    acc = np.zeros(y.shape, np.int64)
    gacc = np.zeros(x.shape, np.int64)
    real = np.zeros(y.shape)
    greal = np.zeros(x.shape)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i, j, pos, kk in _windows(x.shape, k, s, p):
                cnt = kk if include_pad else len(pos)
                r = (R32 + cnt // 2) // cnt
                tot = sum(int(x[n, c, a, b]) for a, b in pos)
                acc[n, c, i, j] = tot * r
                real[n, c, i, j] = tot * 2.0**-5 / cnt
                for a, b in pos:
                    gacc[n, c, a, b] += int(d[n, c, i, j]) * r
                    greal[n, c, a, b] += d[n, c, i, j] * 2.0**-9 / cnt
    ref = requant_array(acc, -5 - 32, bits)
    assert e == ref[1] and np.array_equal(y, ref[0])
    assert np.abs(deq((y, e)) - real).max() <= 2.0 ** (e - 1) + 2.0 ** (-5 - 33) * np.abs(acc).max() / R32
    gref = requant_array(gacc, -9 - 32, 8, w)
    assert de == gref[1] and np.array_equal(dx, gref[0])
    assert np.abs(deq((dx, de)) - greal).max() < 2.0**de + 2.0**-40


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("axes,keep", [((2, 3), True), ((1,), False), ((0, 1, 2, 3), True), ((-1,), True)])
def test_reduce_mean_and_global_pool(case: str, axes, keep: bool) -> None:
    x = _x(case, (3, 4, 2, 5))
    y, e = pool.reduce_mean(x, 2, axes, keep, 8)
    ax = tuple(a % 4 for a in axes)
    n = math.prod(x.shape[a] for a in ax)
    r = (R32 + n // 2) // n
    tot = x.astype(object).sum(axis=ax, keepdims=keep)
    ref = requant_array(np.asarray(tot * r, np.int64), 2 - 32, 8)
    assert e == ref[1] and np.array_equal(y, ref[0])
    assert np.abs(deq((y, e)) - (x * 4.0).mean(axis=ax, keepdims=keep)).max() <= 2.0 ** (e - 1) + 2.0**-20
    d = tensor("random", y.shape, 8, 2).astype(np.int8)
    dx, de = pool.reduce_mean_backward(d, -6, x.shape, axes, keep, 8)
    dd = d.astype(object) if keep else np.expand_dims(d.astype(object), ax)
    gref = requant_array(np.asarray(np.broadcast_to(dd * r, x.shape), np.int64), -6 - 32, 8)
    assert de == gref[1] and np.array_equal(dx, gref[0])
    w = words(x.shape, 5)  # stochastic: each element with its own word
    sref = requant_array(np.asarray(np.broadcast_to(dd * r, x.shape), np.int64), -6 - 32, 8, w)
    got = pool.reduce_mean_backward(d, -6, x.shape, axes, keep, 8, w)
    assert got[1] == sref[1] and np.array_equal(got[0], sref[0])
    greal = np.broadcast_to((d if keep else np.expand_dims(d, ax)) * 2.0**-6 / n, x.shape)
    assert np.abs(deq((dx, de)) - greal).max() <= 2.0 ** (de - 1) + 2.0**-38
    if axes == (2, 3):
        assert all(np.array_equal(u, v) for u, v in
                   zip(pool.global_avgpool(x, 2, 8), (y, e)))
        assert np.array_equal(pool.global_avgpool_backward(d, -6, x.shape, 8)[0], dx)


def test_mean_sum_bound_is_checked() -> None:
    with pytest.raises(OverflowError):
        pool.reduce_mean(np.full((1, 2**17), 2**14, np.int16), 0, (1,), True, 8)


def test_maxpool_backward_of_huge_int64_inputs_keeps_the_first_maximum() -> None:
    """int64 inputs whose tie-breaking keys (q kk + r) would pass int64 take the general path: the
    argmax is still each window's first maximum."""
    big = (1 << 62) - 1
    x = np.array([[[[big, big, -big, 0], [big, 0, -big, -big]]]], np.int64)
    d = np.array([[[[5, -7]]]], np.int8)
    dx, de = pool.maxpool2d_backward(x, 0, d, -3, (2, 2), (2, 2), (0, 0, 0, 0), 8)
    assert de == -3 and dx.tolist() == [[[[5, 0, 0, -7], [0, 0, 0, 0]]]]

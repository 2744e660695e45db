"""intref.arith: Add / Sub / Mul / Concat with exponent alignment, forward and backward,
bit-exact against Python-int references and exact against float64 within one rounding."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.runtime.intref import arith
from tests.runtime.intref._plain import CASES, deq, requant_array, tensor, words

PAIRS = [(-7, -7), (-9, -3), (2, -6), (0, 5)]
SHAPES = [((4, 3), (4, 3)), ((2, 4, 3), (3,)), ((4, 1), (1, 5)), ((1,), (1,))]


def _pair(case: str, sa, sb, seed: int):
    return (tensor(case, sa, 8, seed).astype(np.int8), tensor("random", sb, 8, seed + 1).astype(np.int8))


def _aligned_ref(a: np.ndarray, ea: int, b: np.ndarray, eb: int, sign: int):
    e = min(ea, eb)
    fa, fb = np.broadcast_arrays(a.astype(object) * 2 ** (ea - e), b.astype(object) * 2 ** (eb - e))
    return np.array([int(x) + sign * int(y) for x, y in zip(fa.ravel(), fb.ravel())], np.int64).reshape(fa.shape), e


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ea,eb", PAIRS)
@pytest.mark.parametrize("sa,sb", SHAPES)
@pytest.mark.parametrize("bits", [4, 8])
def test_add_sub_mul(case: str, ea: int, eb: int, sa, sb, bits: int) -> None:
    a, b = _pair(case, sa, sb, abs(ea - eb))
    if case == "single":
        b = b.reshape(-1)[:1].reshape((1,) * b.ndim)
    for fn, sign, real in [(arith.add, 1, np.add), (arith.sub, -1, np.subtract)]:
        y = fn(a, ea, b, eb, bits)
        acc, e = _aligned_ref(a, ea, b, eb, sign)
        ref = requant_array(acc, e, bits)
        assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
        assert np.abs(deq(y) - real(a * 2.0**ea, b * 2.0**eb)).max() <= 2.0 ** (y[1] - 1)
    y = arith.mul(a, ea, b, eb, bits)
    fa, fb = np.broadcast_arrays(a, b)
    acc = np.array([int(x) * int(z) for x, z in zip(fa.ravel(), fb.ravel())], np.int64).reshape(fa.shape)
    ref = requant_array(acc, ea + eb, bits)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    assert np.abs(deq(y) - (a * 2.0**ea) * (b * 2.0**eb)).max() <= 2.0 ** (y[1] - 1)


def _sum_to(x: np.ndarray, shape) -> np.ndarray:
    """float64 sum of a broadcast gradient back to ``shape`` (the textbook rule)."""
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and x.shape[i] != 1:
            x = x.sum(axis=i, keepdims=True)
    return x


@pytest.mark.parametrize("sa,sb", SHAPES)
def test_backward_rules(sa, sb) -> None:
    a, b = _pair("random", sa, sb, 3)
    ea, eb = -5, -8
    out = np.broadcast_shapes(sa, sb)
    d = tensor("random", out, 8, 9).astype(np.int8)
    de = -10
    wa, wb = words(sa, 1), words(sb, 2)
    (da, eda), (db, edb) = arith.add_backward(d, de, sa, sb, 8, wa, wb)
    ra = requant_array(np.asarray(_sum_to(d.astype(object), sa), np.int64).reshape(sa), de, 8, wa)
    assert eda == ra[1] and np.array_equal(da, ra[0])
    assert np.abs(deq((db, edb)) - _sum_to(d * 2.0**de, sb)).max() < 2.0**edb
    (_, _), (sdb, sedb) = arith.sub_backward(d, de, sa, sb, 8)
    assert np.abs(deq((sdb, sedb)) + _sum_to(d * 2.0**de, sb)).max() <= 2.0 ** (sedb - 1)
    (ma, mea), (mb, meb) = arith.mul_backward(a, ea, b, eb, d, de, 8, wa, wb)
    prod = np.broadcast_arrays(d.astype(object) * b.astype(object))[0]
    ra = requant_array(np.asarray(_sum_to(prod, sa), np.int64).reshape(sa), de + eb, 8, wa)
    assert mea == ra[1] and np.array_equal(ma, ra[0])
    ga = _sum_to(d * 2.0**de * b * 2.0**eb, sa)
    gb = _sum_to(d * 2.0**de * a * 2.0**ea, sb)
    assert np.abs(deq((ma, mea)) - ga).max() < 2.0**mea and np.abs(deq((mb, meb)) - gb).max() < 2.0**meb


@pytest.mark.parametrize("exps", [(-4, -4, -4), (-9, -2, 0), (3, -6, -1)])
@pytest.mark.parametrize("bits", [4, 8])
def test_concat(exps, bits: int) -> None:
    parts = [(tensor(c, (2, n, 3), 8, i).astype(np.int8), e)
             for i, (c, n, e) in enumerate(zip(("random", "saturated", "negative"), (1, 4, 2), exps))]
    y = arith.concat(parts, 1, bits)
    e = min(exps)
    acc = np.concatenate([np.vectorize(lambda v, k=k: int(v) * 2 ** (k - e), otypes=[np.int64])(q) for q, k in parts],
                         axis=1)
    ref = requant_array(acc, e, bits)
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0])
    real = np.concatenate([q * 2.0**k for q, k in parts], axis=1)
    assert np.abs(deq(y) - real).max() <= 2.0 ** (y[1] - 1)
    if bits == 8 and len(set(exps)) == 1:
        assert np.array_equal(deq(y), real)  # same exponent and width: exact
    pieces = arith.concat_backward(y[0], y[1], [1, 4, 2], 1)
    assert all(np.array_equal(p, y[0][:, s:t]) and pe == y[1]
               for (p, pe), s, t in zip(pieces, (0, 1, 5), (1, 5, 7)))

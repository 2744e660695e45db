"""Requantise, max |x|, bias add: the C kernels against plain int64 / Python-int references.

The nearest-rounding path is also checked against the numpy runtime's own
:func:`rctc.runtime.quant.requantize` (same shift, same integers): the C kernel implements the
reference's algorithm, not a look-alike.
"""

from __future__ import annotations

import numpy as np
import pytest

from rctc.native.kernels import Kernels
from rctc.runtime.quant import requantize

SIZES = [1, 3, 17, 31, 65, 129, 1000]


def ref_requant(acc: np.ndarray, s: int, bits: int, rand: np.ndarray | None) -> np.ndarray:
    """clip(floor((acc + r) / 2^s)) in Python integers (no overflow possible)."""
    qmax = 2 ** (bits - 1) - 1
    out = []
    for i, x in enumerate(acc.tolist()):
        if s == 0:
            r = 0
        elif rand is None:
            r = 1 << (s - 1)
        else:
            w = int(rand[i])
            r = w >> (32 - s) if s <= 32 else w << (s - 32)
        out.append(min(max((x + r) >> s, -qmax), qmax))
    return np.array(out, np.int8)


def ref_shift(absmax: int, bits: int) -> int:
    qmax = 2 ** (bits - 1) - 1
    s = 0
    while absmax > qmax << s:
        s += 1
    return s


def accumulators(rng: np.random.Generator, dtype: type, n: int) -> list[np.ndarray]:
    info = np.iinfo(dtype)
    small = rng.integers(-5000, 5001, n).astype(dtype)
    full = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    ends = rng.choice(np.array([info.min, info.max, info.min + 1, -1, 0, 1], dtype), n)
    return [small, full, ends]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("n", SIZES)
def test_absmax_shift_and_nearest_match_runtime_requantize(kernels: Kernels, dtype: type, n: int) -> None:
    rng = np.random.default_rng(n)
    for acc in accumulators(rng, dtype, n):
        m = kernels.absmax(acc)
        assert m == max(abs(int(v)) for v in acc.tolist())
        for bits in (8, 4, 2):
            s = kernels.requant_shift(m, bits)
            assert s == ref_shift(m, bits)
            if s > 62:
                continue
            q = kernels.requant(acc, s, bits)
            assert np.array_equal(q, ref_requant(acc, s, bits, None)), (bits, s)
            rq, rexp = requantize(acc, 0, bits)
            assert rexp == s and np.array_equal(q, rq.astype(np.int8)), (bits, s)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_stochastic_and_fixed_shifts(kernels: Kernels, dtype: type) -> None:
    """Every shift 0..62 with given random words, nearest and stochastic, clipped to the range."""
    rng = np.random.default_rng(5)
    for acc in accumulators(rng, dtype, 129):
        words = rng.integers(0, 2**32, acc.shape, dtype=np.uint32)
        words[:3] = (0, 2**32 - 1, 2**31)
        for s in range(63):
            for bits in (8, 5):
                assert np.array_equal(kernels.requant(acc, s, bits, words), ref_requant(acc, s, bits, words)), s
                assert np.array_equal(kernels.requant(acc, s, bits), ref_requant(acc, s, bits, None)), s


def test_stochastic_rounding_is_unbiased(kernels: Kernels) -> None:
    """E[(x + r) >> s] = x / 2^s for uniform words: a statistical check of the formula's intent."""
    rng = np.random.default_rng(9)
    acc = np.full(200_000, 37, np.int32)  # 37 / 8 = 4.625
    q = kernels.requant(acc, 3, 8, rng.integers(0, 2**32, acc.shape, dtype=np.uint32))
    assert set(np.unique(q).tolist()) == {4, 5}
    assert abs(q.mean() - 4.625) < 0.005


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_bias_add(kernels: Kernels, dtype: type) -> None:
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype)
    for shape, axis in (((3, 17, 5, 7), 1), ((31, 65), 1), ((1, 1), 1), ((4, 3), 0)):
        acc = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        bias = rng.integers(info.min, info.max, shape[axis], dtype=dtype, endpoint=True)
        bshape = [1] * len(shape)
        bshape[axis] = shape[axis]
        with np.errstate(over="ignore"):
            want = acc + bias.reshape(bshape)  # numpy integer arrays wrap, as the kernel does
        kernels.bias_add(acc, bias, axis)
        assert np.array_equal(acc, want)


def test_bad_requant_arguments(kernels: Kernels) -> None:
    with pytest.raises(ValueError, match="shift"):
        kernels.requant(np.zeros(3, np.int32), 63)
    with pytest.raises(ValueError, match="int32 or int64"):
        kernels.requant(np.zeros(3, np.int16), 1)
    with pytest.raises(ValueError, match="one random word"):
        kernels.requant(np.zeros(3, np.int32), 1, 8, np.zeros(2, np.uint32))

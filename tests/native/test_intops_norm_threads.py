"""The threaded BatchNorm and LayerNorm kernels (rctc_iq_batchnorm_*_mt, rctc_iq_layernorm*_mt)
against intref.norm bit for bit at 1, 2 and 3 threads, on tensors small and large enough to split,
odd sizes, int8 and int16 inputs, stochastic and nearest rounding, and the refusals (the same
exception)."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.runtime.intref import norm
from tests.native.intops_cases import check, rand_words

SHAPES = [(16, 7, 33, 37), (5, 3, 9000), (2, 1, 70001), (24, 5, 41, 67)]  # the last splits (> 2 x 2^17)


def _params(c: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    gam = (rng.integers(-(2**15), 2**15, c).astype(np.int16), -14)
    bet = (rng.integers(-127, 128, c).astype(np.int8), -5)
    rm = (rng.integers(-3000, 3000, c).astype(np.int16), -10)
    rv = (rng.integers(0, 3000, c).astype(np.int16), -9)
    return gam, bet, rm, rv


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batchnorm_backward_threads(intops, shape: tuple[int, ...], threads: int) -> None:
    rng = np.random.default_rng(len(shape) + threads)
    gam, _, _, _ = _params(shape[1], 3)
    q8 = rng.integers(-128, 128, shape).astype(np.int8)
    q16 = rng.integers(-3, 4, shape).astype(np.int16)  # N max|q| below 2^29
    dq = rng.integers(-128, 128, shape).astype(np.int8)
    words = rand_words(shape, 5)
    for q, e in ((q8, -6), (q16, 0)):
        check(lambda *a: intops.batchnorm_backward(*a, threads=threads), norm.batchnorm_backward,
              q, e, gam, dq, -5, 1e-5, 8, words)
        check(lambda *a: intops.batchnorm_backward(*a, threads=threads), norm.batchnorm_backward,
              q, e, gam, dq, -5, 1e-3, 16)
    zero_dy = np.zeros(shape, np.int8)  # dx all zero: requantize's shift 0
    check(lambda *a: intops.batchnorm_backward(*a, threads=threads), norm.batchnorm_backward,
          q8, -6, gam, zero_dy, -5, 1e-5, 8, words)


@pytest.mark.parametrize("threads", [1, 2])
def test_batchnorm_backward_threads_refuse_as_intref(intops, threads: int) -> None:
    shape = (4, 2, 40000)  # N = 160000: N * 4096 >= 2^29 is refused
    gam, _, _, _ = _params(2, 4)
    big = np.full(shape, 4096, np.int16)
    dq = np.ones(shape, np.int8)
    check(lambda *a: intops.batchnorm_backward(*a, threads=threads), norm.batchnorm_backward,
          big, 0, gam, dq, -5, 1e-5, 8)
    with pytest.raises(OverflowError):
        intops.batchnorm_backward(big, 0, gam, dq, -5, 1e-5, 8, threads=threads)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batchnorm_train_threads(intops, shape: tuple[int, ...], threads: int) -> None:
    rng = np.random.default_rng(len(shape) + 10 * threads)
    gam, bet, rm, rv = _params(shape[1], 6)
    q8 = rng.integers(-128, 128, shape).astype(np.int8)
    q16 = rng.integers(-3, 4, shape).astype(np.int16)
    for q, e in ((q8, -6), (q16, 0)):
        for bits in (8, 16):
            check(lambda *a: intops.batchnorm_train(*a, threads=threads), norm.batchnorm_train,
                  q, e, gam, bet, rm, rv, 1e-5, 0.9, bits)
    check(lambda *a: intops.batchnorm_train(*a, threads=threads), norm.batchnorm_train,
          q8, -6, gam, (bet[0], 40), rm, rv, 1e-5, 0.9, 8)  # a bias far above the accumulator
    check(lambda *a: intops.batchnorm_train(*a, threads=threads), norm.batchnorm_train,
          np.zeros(shape, np.int8), -6, gam, bet, rm, rv, 0.5, 0.0, 8)


@pytest.mark.parametrize("threads", [1, 2])
def test_batchnorm_train_threads_refuse_as_intref(intops, threads: int) -> None:
    shape = (4, 2, 40000)
    gam, bet, rm, rv = _params(2, 7)
    big = np.full(shape, 4096, np.int16)
    with pytest.raises(OverflowError):
        norm.batchnorm_train(big, 0, gam, bet, rm, rv, 1e-5, 0.9, 8)
    with pytest.raises(OverflowError):
        intops.batchnorm_train(big, 0, gam, bet, rm, rv, 1e-5, 0.9, 8, threads=threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_batchnorm_train_max_from_extremes_and_in_full(intops, threads: int) -> None:
    """The forward's requantize shift comes from x's two extremes where gamma xhat + bias cannot
    wrap (xhat's bound from x's range, gamma inside 2^31) and from every element where it might
    (an int32 gamma of -2^31); both against intref, with the largest magnitude at the low end, at
    the high end, with negative gammas, and on a small group of nearly equal values."""
    rng = np.random.default_rng(threads)
    _, bet, rm, rv = _params(4, 8)
    gam = (np.array([3000, -3000, 127, -(2**15)], np.int16), -14)
    skew_low = rng.integers(0, 20, (32, 4, 64)).astype(np.int8)
    skew_low[3, :, 5] = -128  # one far outlier below: the largest |y| at x's minimum
    skew_high = (-skew_low.astype(np.int16)).clip(-128, 127).astype(np.int8)
    nearly_flat = rng.integers(0, 2, (2, 4, 3)).astype(np.int8)  # N = 6: the full pass
    for q in (skew_low, skew_high, nearly_flat, rng.integers(-128, 128, (32, 4, 64)).astype(np.int8)):
        for g in (gam, (np.array([-(2**31), 2**31 - 1, 5, -5], np.int32), -40)):
            check(lambda *a: intops.batchnorm_train(*a, threads=threads), norm.batchnorm_train,
                  q, -6, g, bet, rm, rv, 1e-5, 0.9, 8)


LN_SHAPES = [(512, 32), (3, 4099), (2, 7, 700), (9000, 1), (64, 33)]  # all but the last past 8192 elements


@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_layernorm_threads(intops, shape: tuple[int, ...], threads: int) -> None:
    """rctc_iq_layernorm_mt / _backward_mt: intref's bits at 1-3 threads (rows split into parts,
    dgamma / dbeta's columns too), int8 and int16 inputs, nearest and stochastic."""
    rng = np.random.default_rng(len(shape) * 10 + threads)
    n = shape[-1]
    gam = (rng.integers(-(2**15), 2**15, n).astype(np.int16), -14)
    bet = (rng.integers(-127, 128, n).astype(np.int8), -5)
    q8 = rng.integers(-128, 128, shape).astype(np.int8)
    q16 = rng.integers(-(2**12), 2**12, shape).astype(np.int16)
    dq = rng.integers(-128, 128, shape).astype(np.int8)
    words = rand_words(shape, 7)
    for q, e in ((q8, -6), (q16, -9)):
        check(lambda *a: intops.layernorm(*a, threads=threads), norm.layernorm, q, e, gam, bet, -1, 1e-5, 8)
        check(lambda *a: intops.layernorm_backward(*a, threads=threads), norm.layernorm_backward,
              q, e, gam, dq, -5, -1, 1e-5, 8, words)
        check(lambda *a: intops.layernorm_backward(*a, threads=threads), norm.layernorm_backward,
              q, e, gam, dq, -5, -1, 1e-5, 16)


@pytest.mark.parametrize("threads", [2, 3])
def test_layernorm_threads_refuse_as_intref(intops, threads: int) -> None:
    """A refusal in a later part of the rows (a bias past the accumulator's limit; an error of
    dy gamma past 2^62, whose 16-bit rounding refuses) raises what intref raises, at any thread count."""
    rng = np.random.default_rng(threads)
    shape = (300, 64)
    q = rng.integers(-128, 128, shape).astype(np.int8)
    gam = (rng.integers(-127, 128, 64).astype(np.int8), -7)
    far_bias = (np.full(64, 127, np.int8), 60)
    gam[0][-1] = 127
    dq = np.zeros(shape, np.int64)
    dq[-1, -1] = 2**56  # dy gamma = 127 * 2^56: past 2^62, no wrap
    for c_fn, ref, args in ((intops.layernorm, norm.layernorm, (q, -6, gam, far_bias, -1, 1e-5, 8)),
                            (intops.layernorm_backward, norm.layernorm_backward, (q, -6, gam, dq, -5, -1, 1e-5, 8))):
        with pytest.raises(OverflowError):
            ref(*args)
        with pytest.raises(OverflowError):
            c_fn(*args, threads=threads)

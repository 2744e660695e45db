"""C pool and normalisation kernels against intref.pool / intref.norm, bit for bit: pool
geometries with odd sizes, strides and pads, ties, padding-only windows; BatchNorm (train,
backward, inference) and LayerNorm (forward, backward) over shapes, exponents and widths, and
one large group whose per-group scalars need the 128-bit path (N^2 eps, gamma N m past 2^64)."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.runtime.intref import norm, pool
from tests.native.conftest import same
from tests.native.intops_cases import check, edge_tensors, rand_words

GEOMS = [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (1, 1), (1, 1, 1, 1)), ((3, 2), (2, 1), (1, 0, 2, 1)),
         ((1, 1), (1, 1), (0, 0, 0, 0)), ((2, 3), (3, 2), (0, 2, 1, 0)), ((3, 3), (2, 2), (2, 2, 2, 2))]
IN_SHAPES = [(1, 1, 1, 1), (1, 1, 5, 7), (2, 3, 6, 6), (3, 2, 7, 5)]


@pytest.mark.parametrize("shape", IN_SHAPES)
@pytest.mark.parametrize("geom", GEOMS)
def test_maxpool_avgpool(intops, shape, geom) -> None:
    k, s, p = geom
    if shape[2] + p[0] + p[2] < k[0] or shape[3] + p[1] + p[3] < k[1]:
        pytest.skip("kernel larger than the padded input")
    for kind, q in edge_tensors(shape, np.int8, 3).items():
        out_shape = pool.maxpool2d(q, 0, k, s, p)[0].shape
        dy = edge_tensors(out_shape, np.int8, 4)[kind]
        words = rand_words(shape, 5)
        for e in (-7, 0):
            check(intops.maxpool2d, pool.maxpool2d, q, e, k, s, p)
            for bits in (4, 8):
                check(intops.maxpool2d_backward, pool.maxpool2d_backward, q, e, dy, -3, k, s, p, bits)
                check(intops.maxpool2d_backward, pool.maxpool2d_backward, q, e, dy, -3, k, s, p, bits, words)
                for inc in (False, True):
                    check(intops.avgpool2d, pool.avgpool2d, q, e, k, s, p, inc, bits)
                    check(intops.avgpool2d_backward, pool.avgpool2d_backward, dy, e, shape, k, s, p, inc, bits, words)
                    check(intops.avgpool2d_backward, pool.avgpool2d_backward, dy, e, shape, k, s, p, inc, bits)


def test_maxpool_threads_and_wide_storage(intops) -> None:
    """The 2x2 int8 fast path and the threaded split give the reference's bits at 1 and 2 threads."""
    q = np.random.default_rng(0).integers(-128, 128, (8, 64, 64, 64)).astype(np.int8)
    want = pool.maxpool2d(q, -3, (2, 2), (2, 2))
    for t in (1, 2, 3):
        assert same(intops.maxpool2d(q, -3, (2, 2), (2, 2), nthreads=t), want)
    odd = q[:2, :3, :7, :9].astype(np.int16)
    for t in (1, 2):
        assert same(intops.maxpool2d(odd, 1, (2, 2), (2, 2), nthreads=t), pool.maxpool2d(odd, 1, (2, 2), (2, 2)))


@pytest.mark.parametrize("shape", [(32, 16, 32), (3, 5, 17), (2, 40, 48), (1, 9, 70), (4, 7, 15), (5, 3, 1),
                                   (2, 3000, 1), (3, 300, 8), (64, 64, 1)])
def test_reduce_mean_middle_axis(intops, shape) -> None:
    """The kernels on (outer, red, inner) as the generated step calls them (the middle axis
    reduced in place): the sums row by row, the backward's rows of 16 or more rounded from one
    product each (rand read at each element's own word), shorter rows a block of copies at a time
    (several blocks past 2048 copies); intref's bits for int8 / int16 inputs, nearest and
    stochastic."""
    import ctypes

    vp, ci, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t  # typed arguments: the shared lib keeps no argtypes
    fwd, bwd = intops.lib.rctc_iq_reduce_mean, intops.lib.rctc_iq_reduce_mean_backward
    outer, red, inner = shape
    dims = (sz(outer), sz(red), sz(inner))
    rng = np.random.default_rng(sum(shape))
    words = rand_words(shape, 11)
    for dt in (np.int8, np.int16):
        q = rng.integers(np.iinfo(dt).min, int(np.iinfo(dt).max) + 1, shape).astype(dt)
        want, we = pool.reduce_mean(q, -5, (1,), False, 8)
        work, out, e = np.zeros(q.size, np.int64), np.zeros((outer, inner), np.int8), ci(0)
        assert fwd(*dims, vp(q.ctypes.data), ci(q.itemsize), ci(-5), ci(8), vp(work.ctypes.data),
                   vp(out.ctypes.data), ctypes.byref(e)) == 0
        assert e.value == we and np.array_equal(out, want)
        dy = rng.integers(-128, 128, (outer, inner)).astype(np.int8)
        for r in (None, words):
            want, we = pool.reduce_mean_backward(dy, -4, shape, (1,), False, 8, r)
            out = np.zeros(shape, np.int8)
            assert bwd(*dims, vp(dy.ctypes.data), ci(1), ci(-4), ci(8), vp(None if r is None else r.ctypes.data),
                       vp(work.ctypes.data), vp(out.ctypes.data), ctypes.byref(e)) == 0
            assert e.value == we and np.array_equal(out, want), (dt, r is None)


@pytest.mark.parametrize("shape,axes", [((2, 3, 4, 5), (2, 3)), ((2, 3, 4, 5), (0, 2)), ((7,), (0,)),
                                        ((3, 1, 5), (-1,)), ((2, 3, 4), (1,)), ((32, 16, 32), (1,))])
def test_reduce_mean_and_global_pool(intops, shape, axes) -> None:
    """Through IntOps (the reduced axes moved last: inner 1), int8 / int16 / int32: intref's bits."""
    for dt in (np.int8, np.int32):
        q = edge_tensors(shape, dt, 10)["random"]
        check(intops.reduce_mean, pool.reduce_mean, q, -5, axes, False, 8)
    for kind, q in edge_tensors(shape, np.int16, 6).items():
        for keep in (True, False):
            for bits in (4, 8, 16):
                check(intops.reduce_mean, pool.reduce_mean, q, -5, axes, keep, bits)
                out_shape = pool.reduce_mean(q.astype(np.int8), 0, axes, keep)[0].shape
                dy = edge_tensors(out_shape, np.int8, 7)[kind]
                check(intops.reduce_mean_backward, pool.reduce_mean_backward, dy, -4, shape, axes, keep, bits,
                      rand_words(shape, 8))
                check(intops.reduce_mean_backward, pool.reduce_mean_backward, dy, -4, shape, axes, keep, bits)
    if len(shape) == 4:
        q = edge_tensors(shape, np.int8, 9)["random"]
        check(intops.global_avgpool, pool.global_avgpool, q, -2)
        check(intops.global_avgpool_backward, pool.global_avgpool_backward, q[:, :, :1, :1], -2, shape, 8,
              rand_words(shape, 10))


def _bn_params(c: int, seed: int, gdtype=np.int8):
    rng = np.random.default_rng(seed)
    gam = (rng.integers(-127, 128, c).astype(gdtype), -6)
    bet = (rng.integers(-127, 128, c).astype(np.int8), -4)
    rm = (rng.integers(-3000, 3000, c).astype(np.int16), -10)
    rv = (rng.integers(0, 3000, c).astype(np.int16), -9)
    return gam, bet, rm, rv


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (4, 3, 5), (3, 4, 5, 6), (1, 2, 1, 1)])
def test_batchnorm(intops, shape) -> None:
    gam, bet, rm, rv = _bn_params(shape[1], len(shape))
    for q in edge_tensors(shape, np.int8, 11).values():
        dq = edge_tensors(shape, np.int8, 12)["random"]
        words = rand_words(shape, 13)
        for e in (-7, -2, 0, 3):
            for eps, mom in ((1e-5, 0.9), (1e-3, 0.99), (0.5, 0.0)):
                check(intops.batchnorm_train, norm.batchnorm_train, q, e, gam, bet, rm, rv, eps, mom, 8)
                check(intops.batchnorm_inference, norm.batchnorm_inference, q, e, gam, bet, rm, rv, eps, 8)
                check(intops.batchnorm_backward, norm.batchnorm_backward, q, e, gam, dq, -5, eps, 8, words)
            for bits in (4, 16):
                check(intops.batchnorm_backward, norm.batchnorm_backward, q, e, gam, dq, -5, 1e-5, bits)
                check(intops.batchnorm_train, norm.batchnorm_train, q, e, gam, bet, rm, rv, 1e-5, 0.9, bits)
    odd_var = (rv[0], -8)  # an odd running-variance exponent is made even by intref
    q = edge_tensors(shape, np.int8, 14)["random"]
    check(intops.batchnorm_inference, norm.batchnorm_inference, q, -3, gam, bet, rm, odd_var)


@pytest.mark.parametrize("shape,axis", [((1, 1), -1), ((2, 7), -1), ((3, 4, 5), -1), ((3, 4, 5), 1), ((2, 1, 9), 0)])
def test_layernorm(intops, shape, axis) -> None:
    nshape = shape[axis % len(shape):]
    rng = np.random.default_rng(15)
    gam = (rng.integers(-(2**15), 2**15, nshape).astype(np.int16), -14)
    bet = (rng.integers(-127, 128, nshape).astype(np.int8), -5)
    for kind, q in edge_tensors(shape, np.int8, 16).items():
        dq = edge_tensors(shape, np.int8, 17)[kind]
        for e in (-6, 0):
            for bits in (4, 8, 16):
                check(intops.layernorm, norm.layernorm, q, e, gam, bet, axis, 1e-5, bits)
                check(intops.layernorm_backward, norm.layernorm_backward, q, e, gam, dq, -5, axis, 1e-5, bits,
                      rand_words(shape, 18))


@pytest.mark.parametrize("xt", [np.int8, np.int16, np.int32])
@pytest.mark.parametrize("gt", [np.int8, np.int16, np.int32])
def test_layernorm_storage_widths_and_refusals(intops, xt, gt) -> None:
    """The one-pass forward for every input / gamma width (beta int8 and int16, rows of 1, odd and
    long): intref's bits; and intref's refusals: N max|x| at 2^29, a bias that passes the
    accumulator's limit once aligned (with random rows and with constant ones)."""
    rng = np.random.default_rng(int(np.dtype(xt).itemsize * 10 + np.dtype(gt).itemsize))
    for shape in ((5, 1), (3, 37), (2, 300)):
        n = shape[-1]
        hi = min(int(np.iinfo(xt).max), 2**29 // n - 1)
        q = rng.integers(-hi, hi + 1, shape).astype(xt)
        gam = (rng.integers(np.iinfo(gt).min, int(np.iinfo(gt).max) + 1, n).astype(gt), -9)
        for bt in (np.int8, np.int16):
            bet = (rng.integers(np.iinfo(bt).min, int(np.iinfo(bt).max) + 1, n).astype(bt), -3)
            for e in (-6, 2):
                check(intops.layernorm, norm.layernorm, q, e, gam, bet, -1, 1e-5, 8)
            check(intops.layernorm, norm.layernorm, q, -6, gam, (bet[0], 60), -1, 1e-5, 8)
        const = np.full(shape, 3, xt)
        check(intops.layernorm, norm.layernorm, const, -6, gam, (bet[0], 60), -1, 1e-5, 8)
    if xt != np.int8:
        n = 2**15 if xt == np.int16 else 64
        big = np.full((2, n), 2**29 // n, xt)  # N max|x| = 2^29
        check(intops.layernorm, norm.layernorm, big, 0, (np.ones(n, gt), 0), (np.zeros(n, np.int8), 0))


def test_norm_large_group_needs_128_bits(intops) -> None:
    """N = 2^20 + 3 per group: N^2 eps and gamma N m exceed 2^64 (the i128 path); N max|q| just
    below 2^29 is accepted, at 2^29 both refuse."""
    n = 2**20 + 3
    rng = np.random.default_rng(19)
    q = rng.integers(-255, 256, (2, n)).astype(np.int16)
    assert n * 255 < 2**29 and n * n * 2**24 > 2**64
    gam = (np.array([2**15 - 1, -(2**15) + 1] * (n // 2) + [7] * (n % 2), np.int16), -14)
    bet = (np.zeros(n, np.int8), 0)
    dq = rng.integers(-127, 128, (2, n)).astype(np.int8)
    check(intops.layernorm, norm.layernorm, q, -4, gam, bet, -1, 1e-5, 8)
    check(intops.layernorm_backward, norm.layernorm_backward, q, -4, gam, dq, -5, -1, 1e-5, 8)
    bq = q.reshape(2, 1, n).transpose(1, 0, 2).copy()  # BatchNorm: 2 channels of n
    bg = (np.array([2**15 - 1, -(2**15) + 1], np.int16), -14)
    bb, rm, rv = (np.zeros(2, np.int8), 0), (np.zeros(2, np.int16), -8), (np.ones(2, np.int16), -8)
    check(intops.batchnorm_train, norm.batchnorm_train, bq, -4, bg, bb, rm, rv, 0.37, 0.9, 8)
    check(intops.batchnorm_backward, norm.batchnorm_backward, bq, -4, bg, dq.reshape(1, 2, n), -5, 0.37, 8)
    big = np.full((1, 2**21), 256, np.int16)  # N max|q| = 2^29: refused by both
    check(intops.layernorm, norm.layernorm, big, 0, (np.ones(2**21, np.int8), 0), (np.zeros(2**21, np.int8), 0))


@pytest.mark.parametrize("shape", [(4, 6, 28, 28), (3, 4, 9, 11), (2, 2, 2, 2), (1, 3, 3, 2)])
def test_maxpool_backward_2x2_fast_path(intops, shape) -> None:
    """The 2x2 / stride 2 int8 backward's direct scatter (odd sizes leave rows / columns no window
    covers; into dx itself where no rounding is needed) equals intref and the general loop (the
    same values in int16 storage take it), ties between taps included (values from {0, 1}: the
    first maximum in row-major order gets dy)."""
    rng = np.random.default_rng(sum(shape))
    oshape = (*shape[:2], shape[2] // 2, shape[3] // 2)
    for q in (rng.integers(-128, 128, shape).astype(np.int8), rng.integers(0, 2, shape).astype(np.int8),
              np.full(shape, -128, np.int8)):
        # int8 dy at 8 bits and |dy| <= 7 at 4 bits fit dx as they are (the direct int8 scatter), the
        # others need requantise's shift (the int64 scatter, then the rounding)
        for dy in (rng.integers(-128, 128, oshape).astype(np.int8), rng.integers(-3000, 3000, oshape).astype(np.int16),
                   rng.integers(-7, 8, oshape).astype(np.int8)):
            words = rand_words(shape, 9)
            for bits, w in ((8, None), (8, words), (4, words)):
                want = pool.maxpool2d_backward(q, -2, dy, -5, (2, 2), (2, 2), (0, 0, 0, 0), bits, w)
                got = intops.maxpool2d_backward(q, -2, dy, -5, (2, 2), (2, 2), (0, 0, 0, 0), bits, w)
                wide = intops.maxpool2d_backward(q.astype(np.int16), -2, dy, -5, (2, 2), (2, 2), (0, 0, 0, 0), bits, w)
                assert same(got, want) and same(wide, want)
                assert np.count_nonzero(want[0]) > 0 or not np.any(dy)  # gradients reached the input

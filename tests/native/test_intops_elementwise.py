"""C pointwise and arithmetic kernels against intref.pointwise / intref.arith, bit for bit, on a
grid of shapes (odd sizes, single elements), storage widths, exponents, output widths and edge
inputs (zeros, saturated, negative-only, ties), nearest and stochastic; plus random cases drawn
by hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rctc.runtime.intref import arith, pointwise
from tests.native.intops_cases import DTYPES, SHAPES, check, edge_tensors, rand_words

EXPS = [-20, -7, -1, 0, 3]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_clip_leaky(intops, shape, dtype) -> None:
    for q in edge_tensors(shape, dtype, len(shape)).values():
        dq = edge_tensors(shape, np.int8, 7)["random"]
        words = rand_words(shape, 3)
        for e in EXPS:
            check(intops.relu, pointwise.relu, q, e)
            check(intops.relu_backward, pointwise.relu_backward, q, e, dq, -6)
            for lo, hi in ((0.0, 6.0), (-1.3, 2.7), (None, 0.5), (-0.25, None), (2.0, -1.0), (-3e9, 1e9)):
                check(intops.clip, pointwise.clip, q, e, lo, hi)
                check(intops.clip_backward, pointwise.clip_backward, q, e, dq, -4, lo, hi)
            for alpha in (0.01, 0.2, 1.5):
                for bits in (2, 8, 16):
                    check(intops.leaky_relu, pointwise.leaky_relu, q, e, alpha, bits)
                    check(intops.leaky_relu_backward, pointwise.leaky_relu_backward, q, e, dq, -5, alpha, bits, words)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_hardsigmoid_hardswish(intops, shape, dtype) -> None:
    for kind, q in edge_tensors(shape, dtype, 11).items():
        dq = edge_tensors(shape, np.int8, 12)[kind]
        words = rand_words(shape, 4)
        for e in (-12, -7, -3, 0, 2):
            for bits in (4, 8, 16):
                for alpha, beta in ((0.2, 0.5), (1 / 6, 0.5), (0.3, -0.1)):
                    check(intops.hardsigmoid, pointwise.hardsigmoid, q, e, alpha, beta, bits)
                    check(intops.hardsigmoid_backward, pointwise.hardsigmoid_backward, q, e, dq, -3, alpha, beta, bits,
                          words)
                check(intops.hardswish, pointwise.hardswish, q, e, bits)
                check(intops.hardswish_backward, pointwise.hardswish_backward, q, e, dq, -3, bits, words)
                check(intops.hardswish_backward, pointwise.hardswish_backward, q, e, dq, -3, bits)


@pytest.mark.parametrize(("lo", "hi"), [(0.75, None), (None, -0.6), (0.6, -0.6), (-0.6, 0.6), (0.75, 2.0)])
def test_int8_clip_with_a_bound_past_the_int8_range_wraps_as_intref(intops, lo, hi) -> None:
    """At e = -9 the bounds are 384 / -307 / 307 (not multiples of 256): intref clips in int64 and
    then wraps into int8, and so must every C path."""
    for q in edge_tensors((3, 37), np.int8, 2).values():
        check(intops.clip, pointwise.clip, q, -9, lo, hi)
        check(intops.clip_backward, pointwise.clip_backward, q, -9, edge_tensors((3, 37), np.int8, 5)["random"], -4,
              lo, hi)


def test_clip_bound_past_int64_saturates(intops) -> None:
    """intref's clip_bounds gives a Python int past int64 for a huge bound on a fine grid, which
    numpy then refuses (reported); the C kernel saturates the bound at 2^62, which no stored
    integer reaches, so the result is the exact clip: the input unchanged, every error passed."""
    q = edge_tensors((3, 5), np.int32, 1)["saturated"]
    assert pointwise.clip_bounds(-1e30, 1e30, -20)[1] > 2**63
    out, e = intops.clip(q, -20, -1e30, 1e30)
    assert e == -20 and out.dtype == q.dtype and np.array_equal(out, q)
    dq = np.arange(15, dtype=np.int8).reshape(3, 5)
    assert np.array_equal(intops.clip_backward(q, -20, dq, 0, -1e30, 1e30)[0], dq)


BROADCASTS = [((7,), (7,)), ((1,), (1,)), ((3, 5), (5,)), ((2, 3, 5), (3, 1)), ((4, 1, 6), (1, 5, 1)),
              ((3, 4, 5, 6), (1, 4, 1, 1)), ((3, 300), (3, 300)), ((2, 1, 700), (2, 1, 700))]  # dense: typed loops


@pytest.mark.parametrize("sa,sb", BROADCASTS)
def test_add_sub_mul(intops, sa, sb) -> None:
    shape = np.broadcast_shapes(sa, sb)
    words = rand_words(shape, 5)
    for kind in ("random", "saturated", "negative", "zeros", "ties"):
        a = edge_tensors(sa, np.int8, 1)[kind]
        b = edge_tensors(sb, np.int16, 2)["random"]
        for ea, eb in ((0, 0), (-3, -7), (4, -10), (-2, 58), (-70, 1)):
            for bits in (2, 8, 16):
                for fn in ("add", "sub", "mul"):
                    check(getattr(intops, fn), getattr(arith, fn), a, ea, b, eb, bits)
                    check(getattr(intops, fn), getattr(arith, fn), a, ea, b, eb, bits, words)


@pytest.mark.parametrize("sa,sb", BROADCASTS)
def test_add_sub_mul_backward(intops, sa, sb) -> None:
    shape = np.broadcast_shapes(sa, sb)
    a, b = edge_tensors(sa, np.int8, 3)["random"], edge_tensors(sb, np.int8, 4)["ties"]
    for dq in edge_tensors(shape, np.int8, 5).values():
        ra, rb = rand_words(sa, 6), rand_words(sb, 7)
        for bits in (4, 8, 16):
            check(intops.add_backward, arith.add_backward, dq, -5, sa, sb, bits)
            check(intops.add_backward, arith.add_backward, dq, -5, sa, sb, bits, ra, rb)
            check(intops.sub_backward, arith.sub_backward, dq, -5, sa, sb, bits, ra, rb)
            check(intops.mul_backward, arith.mul_backward, a, -3, b, -4, dq, -5, bits)
            check(intops.mul_backward, arith.mul_backward, a, -3, b, -4, dq, -5, bits, ra, rb)
    m = np.full(shape, -128, np.int8)  # sub's negation wraps in int8, as numpy's astype
    check(intops.sub_backward, arith.sub_backward, m, 0, sa, sb, 8)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(intops, axis) -> None:
    rng = np.random.default_rng(axis + 5)
    base = (2, 3, 4)
    for exps in ((0, 0, 0), (-3, 2, -7), (-70, 0, 5), (4, 4, -60)):
        ts = []
        for i, e in enumerate(exps):
            shape = list(base)
            shape[axis] = i + 1
            ts.append((rng.integers(-127, 128, shape).astype([np.int8, np.int16, np.int32][i]), e))
        for bits in (4, 8, 16):
            check(intops.concat, arith.concat, ts, axis, bits)
        cat = np.concatenate([t.astype(np.int8) for t, _ in ts], axis=axis)
        check(intops.concat_backward, arith.concat_backward, cat, -3, [1, 2, 3], axis)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_binary_ops(intops, data) -> None:
    nd = data.draw(st.integers(1, 4))
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=nd, max_size=nd)))
    sb = tuple(1 if data.draw(st.booleans()) else n for n in shape)
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    a = rng.integers(-(2**15), 2**15, shape).astype(np.int16)
    b = rng.integers(-127, 128, sb).astype(np.int8)
    ea, eb = data.draw(st.integers(-80, 80)), data.draw(st.integers(-80, 80))
    bits = data.draw(st.integers(2, 32))
    words = rand_words(shape, seed) if data.draw(st.booleans()) else None
    fn = data.draw(st.sampled_from(["add", "sub", "mul"]))
    check(getattr(intops, fn), getattr(arith, fn), a, ea, b, eb, bits, words)


def test_relu_avx2_equals_portable(intops) -> None:
    if not intops.has_avx2():
        pytest.skip("this CPU or build has no AVX2 variant")
    rng = np.random.default_rng(21)
    for n in [*range(0, 70), 95, 96, 97, 1023, 4099]:
        x = rng.integers(-128, 128, n).astype(np.int8)
        x[: n // 4] = rng.choice(np.array([-128, -1, 0, 1, 127], np.int8), n // 4)
        d = rng.integers(-128, 128, n).astype(np.int8)
        assert np.array_equal(intops.relu_s8(x, "avx2"), intops.relu_s8(x, "portable"))
        assert np.array_equal(intops.relu_s8(x, "avx2", d), intops.relu_s8(x, "portable", d))
        assert np.array_equal(intops.relu_s8(x, "portable"), pointwise.relu(x, 0)[0])
        assert np.array_equal(intops.relu_s8(x, "portable", d), pointwise.relu_backward(x, 0, d, 0)[0])


@pytest.mark.parametrize("shape", [(1,), (33,), (3, 7, 41)])
def test_add_int8_int32_path(intops, shape) -> None:
    """Dense int8 + int8 to 8 bits sums in int32 where max|a| << ka + max|b| << kb < 2^31: intref's
    bits for shifts on both sides of that bound (the int64 path past it), add and sub, nearest and
    stochastic, saturated operands included."""
    words = rand_words(shape, 9)
    for kind in ("random", "saturated", "negative", "zeros", "ties"):
        a = edge_tensors(shape, np.int8, 3)[kind]
        b = edge_tensors(shape, np.int8, 4)["saturated" if kind == "random" else "random"]
        for ea, eb in ((0, 0), (-3, -7), (5, -17), (-1, 21), (0, 22), (0, 23), (-30, 0), (10, -40)):
            for fn in ("add", "sub"):
                for bits in (8, 16):
                    check(getattr(intops, fn), getattr(arith, fn), a, ea, b, eb, bits)
                check(getattr(intops, fn), getattr(arith, fn), a, ea, b, eb, 8, words)


def test_add_s8_s32_and_absmax_s8_avx2_equal_portable(intops) -> None:
    """IntAdd's dense int8 sum (v and max |v|) and the int8 max magnitude: AVX2 = portable = numpy,
    on odd lengths around the vector widths, every shift 0..22, add and sub, -128 anywhere."""
    import ctypes

    if not intops.has_avx2():
        pytest.skip("this CPU or build has no AVX2 variant")
    lib = intops.lib
    for name in ("rctc_iq_add_s8_s32_avx2", "rctc_iq_add_s8_s32_portable"):
        getattr(lib, name).restype = ctypes.c_uint32
        getattr(lib, name).argtypes = [ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                       ctypes.c_int, ctypes.c_void_p]
    lib.rctc_absmax_s8_avx2.restype = ctypes.c_uint32
    lib.rctc_absmax_s8_avx2.argtypes = [ctypes.c_size_t, ctypes.c_void_p]
    rng = np.random.default_rng(5)
    for n in [0, 1, 15, 16, 17, 31, 63, 64, 65, 127, 200, 4099]:
        x = rng.integers(-128, 128, n).astype(np.int8)
        y = rng.integers(-128, 128, n).astype(np.int8)
        if n:
            x[rng.integers(0, n)] = -128
        assert lib.rctc_absmax_s8_avx2(n, x.ctypes.data) == int(np.abs(x.astype(np.int64)).max(initial=0))
        for ka, kb in ((0, 0), (3, 0), (0, 22), (22, 22), (7, 13)):
            for sub in (0, 1):
                want = (x.astype(np.int64) << ka) + (-1 if sub else 1) * (y.astype(np.int64) << kb)
                for name in ("rctc_iq_add_s8_s32_avx2", "rctc_iq_add_s8_s32_portable"):
                    v = np.zeros(n, np.int32)
                    m = getattr(lib, name)(n, x.ctypes.data, ka, y.ctypes.data, kb, sub, v.ctypes.data)
                    assert m == int(np.abs(want).max(initial=0)) and np.array_equal(v, want), (name, n, ka, kb)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_add_threads_equal_intref(intops, threads: int) -> None:
    """rctc_iq_add_mt on operands large enough to split over threads (odd length): intref's bits and
    exponent at 1-3 threads, add and sub, nearest and stochastic, on the int32 fast path and on
    the int64 path (a shift past 22, an int16 result)."""
    import ctypes

    fn = intops.lib.rctc_iq_add_mt
    fn.restype = ctypes.c_int
    vp, ci = ctypes.c_void_p, ctypes.c_int
    fn.argtypes = [ci, ci, vp, vp, ci, vp, ci, vp, ci, vp, ci, ci, ci, vp, vp, vp, ctypes.POINTER(ci)]
    n = 2 * 131072 + 3
    rng = np.random.default_rng(threads)
    a = rng.integers(-128, 128, n).astype(np.int8)
    b = rng.integers(-128, 128, n).astype(np.int8)
    a[n // 3] = -128
    shape = (ctypes.c_int * 1)(n)
    strides = (ctypes.c_ssize_t * 1)(1)
    words = rand_words((n,), 3)
    for ea, eb, bits in ((-5, -6, 8), (0, -3, 8), (0, -30, 8), (-2, -4, 16)):
        for sub in (0, 1):
            for r in (None, words):
                want, we = (arith.sub if sub else arith.add)(a, ea, b, eb, bits, r)
                out = np.zeros(n, want.dtype)
                work = np.zeros(n, np.int64)
                e = ctypes.c_int(0)
                rc = fn(threads, 1, shape, a.ctypes.data, 1, strides, ea, b.ctypes.data, 1, strides, eb, sub, bits,
                        None if r is None else r.ctypes.data, work.ctypes.data, out.ctypes.data, ctypes.byref(e))
                assert rc == 0 and e.value == we and np.array_equal(out, want), (ea, eb, bits, sub, r is None)


PERIODIC = [((32, 16, 32), (32,)), ((32, 16, 32), (1, 16, 32)), ((5, 3, 7), (1, 3, 7)), ((3, 7), (3, 7)),
            ((1, 9), (4, 9)), ((2, 3, 1, 5), (1, 1, 5)), ((70, 1024), (1024,)), ((80, 1000), (80, 1000))]


@pytest.mark.parametrize("sa,sb", PERIODIC)
def test_add_periodic_operands_int32_path(intops, sa, sb) -> None:
    """Operands dense or repeated along leading axes (a bias row, a position table), of 8 / 16 / 32
    bits, sum in int32 where max|a| << ka + max|b| << kb < 2^31: intref's bits on both sides of
    that bound (exponent gaps that put the aligned sum just under and just over 2^31), add and sub,
    nearest and stochastic, to 8 bits; past 65536 elements the sums are not stored (a max pass,
    then a rounding pass that recomputes them a block at a time)."""
    shape = np.broadcast_shapes(sa, sb)
    words = rand_words(shape, 6)
    rng = np.random.default_rng(len(sa) * 7 + len(sb))
    for da, db in ((np.int8, np.int16), (np.int16, np.int8), (np.int16, np.int16), (np.int8, np.int32),
                   (np.int32, np.int8), (np.int8, np.int8)):
        ia, ib = np.iinfo(da), np.iinfo(db)
        a = rng.integers(ia.min, ia.max + 1, sa).astype(da)
        b = rng.integers(ib.min, ib.max + 1, sb).astype(db)
        a.flat[0], b.flat[-1] = ia.min, ib.max
        ma, mb = -int(ia.min), int(ib.max)
        for ea in (-3, 0):
            # eb - ea = k: b << k next to a (and a << -k next to b): the largest k with
            # ma + (mb << k) < 2^31, and one more
            k = max((j for j in range(32) if ma + (mb << j) < 2**31), default=0)
            for eb in (ea + k, ea + k + 1, ea - 1, ea - 20):
                for fn in ("add", "sub"):
                    check(getattr(intops, fn), getattr(arith, fn), a, ea, b, eb, 8)
                    check(getattr(intops, fn), getattr(arith, fn), a, ea, b, eb, 8, words)
                    check(getattr(intops, fn), getattr(arith, fn), b, eb, a, ea, 8, words)


@pytest.mark.parametrize("sa,sb", [*PERIODIC, ((32, 2, 16, 16), (1,)), ((4, 5), ())])
def test_mul_periodic_operands_int32_path(intops, sa, sb) -> None:
    """Mul of operands of at most 16 bits, dense or repeated along leading axes (a scalar, a row),
    to at most 8 bits: int32 products (|a b| <= 2^30, -2^15 squared included) with intref's bits,
    nearest and stochastic; 16-bit results and int32 operands keep the int64 path, also intref's."""
    shape = np.broadcast_shapes(sa, sb)
    words = rand_words(shape, 8)
    rng = np.random.default_rng(len(sa) * 5 + len(sb))
    for da, db in ((np.int8, np.int8), (np.int8, np.int16), (np.int16, np.int8), (np.int16, np.int16),
                   (np.int32, np.int8)):
        ia, ib = np.iinfo(da), np.iinfo(db)
        a = rng.integers(ia.min, ia.max + 1, sa).astype(da)
        b = np.asarray(rng.integers(ib.min, ib.max + 1, sb)).astype(db)
        a.flat[0] = ia.min
        b.flat[0] = ib.min
        for bits in (4, 8, 16):
            check(intops.mul, arith.mul, a, -3, b, -5, bits)
            check(intops.mul, arith.mul, a, -3, b, -5, bits, words)
            check(intops.mul, arith.mul, b, 2, a, -7, bits, words)

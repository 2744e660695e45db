"""C core of the integer kernels against intref.core and Python ints, bit for bit: the portable
128-bit integer at its boundaries, rounding shifts, requantise (nearest / stochastic, every
width, with a bias), align, the fixed-point reciprocal and reciprocal square root."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rctc.runtime.intref import core
from tests.native.conftest import same
from tests.native.intops_cases import check, rand_words

I64 = [0, 1, -1, 2**31, -(2**31), 2**62, -(2**62), 2**63 - 1, -(2**63), 12345678901234567, -987654321987]


def test_i128_mul_and_bitlen_at_the_boundaries(intops) -> None:
    rng = np.random.default_rng(0)
    vals = I64 + [int(v) for v in rng.integers(-(2**63), 2**63, 40, dtype=np.int64)]
    for a in vals:
        for b in vals[:15]:
            assert intops.i128_mul(a, b) == a * b, (a, b)
    for v in [0, 1, -1, 2**64, 2**64 - 1, -(2**64), 2**127 - 1, -(2**127) + 1, 2**100 + 3, -(2**63) * 7]:
        assert intops.i128_bitlen(v) == v.bit_length(), v


def test_i128_floor_division_and_rounding_shift(intops) -> None:
    rng = np.random.default_rng(1)
    nums = [0, 1, -1, 2**127 - 1, -(2**127) + 1, 2**64, -(2**64) - 1, 2**100 + 12345, -(2**90) - 7]
    nums += [int(a) * int(b) for a, b in rng.integers(-(2**62), 2**62, (30, 2), dtype=np.int64)]
    dens = [1, 2, 3, 7, 2**32 + 1, 2**59 - 1, 2**63, 2**64 - 1]
    for a in nums:
        for d in dens:
            assert intops.i128_divfloor(a, d) == a // d, (a, d)  # floor, also for negatives
        for s in (-20, 0, 1, 2, 31, 63, 64, 65, 100, 126):
            if (s <= 0 and (a << -s).bit_length() > 126) or (s > 0 and a + (1 << (s - 1)) >= 2**127):
                continue  # outside the 128-bit range (the kernels never get there)
            want = a << -s if s <= 0 else (a + (1 << (s - 1))) >> s
            assert intops.i128_rshift_round(a, s) == want, (a, s)


@pytest.mark.parametrize("bits", [2, 3, 8, 16, 31, 32])
def test_requant_shift(intops, bits: int) -> None:
    qm = core.qmax(bits)
    ms = [0, 1, qm, qm + 1, 2 * qm, 2 * qm + 1, 3 * qm - 1, 2**62, 2**62 - 1, 2**40 + 17]
    for m in ms:
        for st in (False, True):
            assert intops.requant_shift(m, bits, st) == core.requant_shift(m, bits, st), (m, st)


def test_shift_round_and_shift_every_amount(intops) -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.integers(-(2**62), 2**62, 60, dtype=np.int64),
                        np.array([0, 1, -1, 2**62, -(2**62), 3, -3, 5, -5], np.int64)])
    words = rand_words(x.shape, 2)
    for s in range(0, 66):
        check(intops.shift_round, core.shift_round, x, s)
        check(intops.shift_round, core.shift_round, x, s, words)
    small = x >> 40
    for k in range(-66, 66):
        check(intops.shift, core.shift, small, k)
        check(intops.shift, core.shift, small, k, words)
    check(intops.shift_round, core.shift_round, np.array([2**62 + 1], np.int64), 3)  # past the limit: both refuse


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16, 24, 32])
@pytest.mark.parametrize("n", [1, 17, 1000])
def test_requantize(intops, bits: int, n: int) -> None:
    rng = np.random.default_rng(bits * 1000 + n)
    for acc in (rng.integers(-(2**62), 2**62, n, dtype=np.int64), rng.integers(-300, 300, n).astype(np.int32),
                np.zeros(n, np.int64), np.full(n, -(2**62), np.int64), np.full(n, 2**62 + 1, np.int64)):
        for e in (-40, 0, 7):
            check(intops.requantize, core.requantize, acc, e, bits)
            check(intops.requantize, core.requantize, acc, e, bits, rand=rand_words(acc.shape, n))


def test_requantize_with_bias(intops) -> None:
    rng = np.random.default_rng(3)
    acc = rng.integers(-(2**30), 2**30, (3, 5, 7), dtype=np.int64)
    for shape in ((1, 5, 1), (5, 1), (7,), (1,)):
        bias = rng.integers(-(2**15), 2**15, shape).astype(np.int16)
        for be in (-30, -12, -3, 0, 5, 40):
            check(intops.requantize, core.requantize, acc, -3, 8, bias=bias, bias_exp=be)


def test_align(intops) -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(-127, 128, (4, 5)).astype(np.int8)
    b = rng.integers(-(2**31), 2**31, (5,), dtype=np.int64).astype(np.int32)
    for ea, eb in ((0, 0), (-3, 5), (10, -60), (-70, 3), (0, 40)):
        for headroom in (61, 44, 29):
            check(intops.align, core.align, [(a, ea), (b, eb)], headroom)
    check(intops.align, core.align, [(np.zeros(3, np.int8), 4), (b, -2)])


def test_recip_isqrt_rsqrt(intops) -> None:
    for d in [1, 2, 3, 5, 7, 9, 1000, 2**20 + 1, 2**31 - 1]:
        for frac in (16, 24, 32):
            assert intops.recip_fixed(d, frac) == core.recip_fixed(d, frac)
    rng = np.random.default_rng(5)
    for v in [0, 1, 2, 3, 4, 2**62 - 1, 2**62, 2**64 - 1, *map(int, rng.integers(0, 2**63, 50, dtype=np.int64))]:
        assert intops.isqrt(v) == math.isqrt(v), v
    vs = [1, 2, 3, 2**30, 2**60 - 1, 2**60, 2**62, 2**63 - 1, 2**64 + 5, 2**90 + 1, 2**125 + 3]
    vs += [int(a) * int(b) for a, b in rng.integers(1, 2**62, (20, 2), dtype=np.int64)]
    for v in vs:
        assert intops.rsqrt_fixed(v) == core.rsqrt_fixed(v), v
    with pytest.raises(ValueError):
        intops.rsqrt_fixed(0)


def test_absmax_storage_clip_bounds_reduce_to(intops) -> None:
    from rctc.runtime.intref import arith, pointwise

    rng = np.random.default_rng(6)
    for x in (np.zeros(0, np.int64), np.array([-(2**62), 3], np.int64), rng.integers(-9, 9, (3, 4)).astype(np.int8)):
        assert intops.absmax(x) == core.absmax(x)
    for bits in range(2, 33):
        assert intops.storage_dtype(bits) == core.storage_dtype(bits)
    for lo, hi in ((0.0, 6.0), (-1.3, 2.7), (None, 0.1), (-0.3, None), (1e-9, 3e9), (-7.0, -6.5)):
        for e in (-30, -8, -1, 0, 2, 5, 40, 70):
            assert intops.clip_bounds(lo, hi, e) == pointwise.clip_bounds(lo, hi, e), (lo, hi, e)
    d = rng.integers(-(2**40), 2**40, (2, 3, 4, 5), dtype=np.int64)
    for shape in ((2, 3, 4, 5), (3, 1, 5), (1,), (4, 1), (2, 1, 1, 5)):
        assert same(intops.reduce_to(d, shape), arith.reduce_to(d, shape)), shape


@pytest.mark.parametrize("variant", ["avx2", "avx512"])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 1000])
def test_requantize_int8_simd_equals_portable(intops, n: int, variant: str) -> None:
    """requantize's int8 rounding loop: the AVX2 and AVX-512 variants give the portable bits at every
    shift, nearest and stochastic, on accumulators up to 2^62 whose rounded values fit int8."""
    if not intops.has_avx2() or (variant == "avx512" and not intops.lib.rctc_isa_available() & 4):
        pytest.skip(f"this CPU or build has no {variant} variant")
    rng = np.random.default_rng(n)
    words = rand_words((n,), n)
    for s in range(1, 63):
        lim = min(2**62, 127 << s)  # the requantize contract: results in range
        acc = rng.integers(-lim, lim + 1, n, dtype=np.int64)
        acc[: min(n, 4)] = np.array([lim, -lim, 0, -1], np.int64)[: min(n, 4)]
        for r in (None, words):
            got = intops.round_s8(acc, s, r, variant)
            assert np.array_equal(got, intops.round_s8(acc, s, r, "portable")), s
            want = core.shift_round(acc, s, r)  # intref's rounding, exact in int64
            assert core.absmax(want) <= 127 and np.array_equal(got, want.astype(np.int8)), s


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 8, 15, 16, 17, 33, 1001])
def test_absmax_avx2_equals_portable_and_int64(intops, n: int) -> None:
    """rctc_iq_absmax's AVX2 variant gives the portable result and Python's max |x| (INT64_MIN's
    2^63 and the extreme at every position of the vector loop and the tail included)."""
    import ctypes

    if not intops.has_avx2():
        pytest.skip("this CPU or build has no AVX2 variant")
    lib = intops.lib
    for name in ("rctc_iq_absmax_avx2", "rctc_iq_absmax_portable", "rctc_iq_absmax"):
        getattr(lib, name).restype = ctypes.c_uint64
        getattr(lib, name).argtypes = [ctypes.c_size_t, ctypes.c_void_p]
    rng = np.random.default_rng(n)
    cases = [rng.integers(-(2**62), 2**62, n, dtype=np.int64), rng.integers(-5, 6, n, dtype=np.int64)]
    for pos in range(n):
        for extreme in (-(2**63), 2**63 - 1, -(2**40) - 3):
            x = rng.integers(-1000, 1000, n, dtype=np.int64)
            x[pos] = extreme
            cases.append(x)
    for x in cases:
        x = np.ascontiguousarray(x)
        want = max((abs(int(v)) for v in x), default=0)
        for name in ("rctc_iq_absmax_avx2", "rctc_iq_absmax_portable", "rctc_iq_absmax"):
            assert getattr(lib, name)(x.size, x.ctypes.data) == want, (name, x)


@pytest.mark.parametrize("n", [1, 7, 511, 512, 513, 3000])
def test_requantize_s32_equals_intref(intops, n: int) -> None:
    """rctc_iq_requantize_s32 (an int32 accumulator, no widened copy) gives intref.core.requantize's
    values, dtype and exponent: every bits width, nearest and stochastic, magnitudes from 0 to
    |INT32_MIN|, blocks of the rounding loop and their tails."""
    import ctypes

    fn = intops.lib.rctc_iq_requantize_s32
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.POINTER(ctypes.c_int)]
    rng = np.random.default_rng(n)
    shifted = 0
    for lim in (0, 100, 2**15, 2**31):
        acc = rng.integers(-lim, lim, n, endpoint=lim < 2**31, dtype=np.int64).astype(np.int32)
        if lim == 2**31:
            acc[0] = -(2**31)
        for bits in (2, 4, 8, 12, 16, 24, 32):
            for words in (None, rand_words(acc.shape, n + bits)):
                want, we = core.requantize(acc, -3, bits, rand=words)
                out = np.zeros(n, want.dtype)
                e = ctypes.c_int(0)
                rc = fn(n, acc.ctypes.data, -3, bits, None if words is None else words.ctypes.data, out.ctypes.data,
                        ctypes.byref(e))
                assert rc == 0 and e.value == we and np.array_equal(out, want), (lim, bits)
                shifted += we != -3
    assert shifted > 10  # rounding shifts were compared, not only copies


@pytest.mark.parametrize("variant", ["avx2", "avx512"])
@pytest.mark.parametrize("n", [1, 31, 32, 33, 65, 1001])
def test_requantize_s32_simd_passes_equal_portable(intops, n: int, variant: str) -> None:
    """x86/iq_requant_s32_avx2.c and x86/iq_round_avx512.c: the int32 -> int8 rounding gives the
    portable loop's bits (and intref's shift_round) at every shift 1..31, nearest and stochastic,
    extremes at both ends of the range; the int32 max magnitude equals the portable one and
    Python's (INT32_MIN included)."""
    import ctypes

    if not intops.has_avx2() or (variant == "avx512" and not intops.lib.rctc_isa_available() & 4):
        pytest.skip(f"this CPU or build has no {variant} variant")
    lib = intops.lib
    for name in (f"rctc_iq_round_s32_s8_{variant}", "rctc_iq_round_s32_s8_portable"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_void_p]
    for name in (f"rctc_absmax_s32_{variant}", "rctc_absmax_s32"):
        getattr(lib, name).restype = ctypes.c_uint32
        getattr(lib, name).argtypes = [ctypes.c_size_t, ctypes.c_void_p]
    rng = np.random.default_rng(n + 77)
    words = rand_words((n,), n + 1)
    for s in range(1, 32):
        lo, hi = max(-(2**31), -(128 << s) + (1 << s)), min(2**31 - 1, (127 << s) - (1 << s))
        acc = rng.integers(lo, hi + 1, n, dtype=np.int64).astype(np.int32)
        acc[: min(n, 4)] = np.array([lo, hi, 0, -1], np.int32)[: min(n, 4)]
        for r in (None, words):
            outs = []
            for name in (f"rctc_iq_round_s32_s8_{variant}", "rctc_iq_round_s32_s8_portable"):
                out = np.zeros(n, np.int8)
                getattr(lib, name)(n, acc.ctypes.data, s, None if r is None else r.ctypes.data, out.ctypes.data)
                outs.append(out)
            want = core.shift_round(acc.astype(np.int64), s, r)
            assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1], want.astype(np.int8)), s
    for extreme in (-(2**31), 2**31 - 1, -5):
        for pos in range(n):
            x = rng.integers(-1000, 1000, n, dtype=np.int64).astype(np.int32)
            x[pos] = extreme
            want = max(abs(int(v)) for v in x)
            got = getattr(lib, f"rctc_absmax_s32_{variant}")(n, x.ctypes.data)
            assert got == want == lib.rctc_absmax_s32(n, x.ctypes.data)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_requantize_s32_threads_equal_intref(intops, threads: int) -> None:
    """rctc_iq_requantize_s32_mt on an accumulator large enough to split (odd length): intref's bits
    and exponent at 1-3 threads, nearest and stochastic, int8 / int16 / 2-bit results."""
    import ctypes

    fn = intops.lib.rctc_iq_requantize_s32_mt
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    n = 2 * 131072 + 3  # past two threads' share (RCTC_RQ_PER_THREAD): splits
    rng = np.random.default_rng(threads)
    for lim in (3, 2**20, 2**31):
        acc = rng.integers(-lim, lim, n, dtype=np.int64).astype(np.int32)
        acc[n // 2] = -lim if lim < 2**31 else -(2**31)
        for bits in (2, 8, 16):
            for words in (None, rand_words(acc.shape, bits)):
                want, we = core.requantize(acc, -3, bits, rand=words)
                out = np.zeros(n, want.dtype)
                e = ctypes.c_int(0)
                rc = fn(threads, n, acc.ctypes.data, -3, bits, None if words is None else words.ctypes.data,
                        out.ctypes.data, ctypes.byref(e))
                assert rc == 0 and e.value == we and np.array_equal(out, want), (lim, bits)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 4095, 4097, 2 * 131072 + 4096 * 3 + 5])
def test_requantize_s32_drawing_its_words_equals_intref(intops, threads: int, n: int) -> None:
    """rctc_iq_requantize_s32_words_mt (the kernel draws word i of the node's stream for element i,
    a 4096-word block at a time): intref's requantize with ``rctc.rng.random_words(seed, step,
    node, 0, n)`` as its words, bits and exponent, at 1-3 threads, around the block and the
    thread split, every result width, a shift of 0 (a copy) included."""
    import ctypes

    from rctc.rng import random_words

    fn = intops.lib.rctc_iq_requantize_s32_words_mt
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_uint64,
                   ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    seed, step, node = 0xFEDCBA9876543210, 41, 7 + n % 5
    words = random_words(seed, step, node, 0, n)
    rng = np.random.default_rng(n + threads)
    shifted = 0
    for lim in (3, 2**20, 2**31):
        acc = rng.integers(-lim, lim, n, dtype=np.int64).astype(np.int32)
        acc[n // 2] = -lim if lim < 2**31 else -(2**31)
        for bits in (2, 8, 16, 32):
            want, we = core.requantize(acc, -3, bits, rand=words)
            out = np.zeros(n, want.dtype)
            e = ctypes.c_int(0)
            rc = fn(threads, n, acc.ctypes.data, -3, bits, seed, step, node, out.ctypes.data, ctypes.byref(e))
            assert rc == 0 and e.value == we and np.array_equal(out, want), (lim, bits)
            shifted += we != -3
    assert shifted >= 6  # stochastic roundings were compared, not only copies

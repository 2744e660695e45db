"""Integer arithmetic core: int_matmul against the plain int64 numpy reference, and the
dynamic fixed point helpers against Python-int / float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rctc.runtime.intmath import (
    F32_EXACT,
    F64_EXACT,
    choose_exponent,
    dequantize,
    exact_float_matmul,
    int_dtype_for_bits,
    int_matmul,
    matmul_plan,
    pixel_ranges,
    qmax_for_bits,
    quantize,
    requantize,
    shift_left,
    shift_right_round,
)


def ref_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The reference: numpy's (non-BLAS, exact) int64 matmul."""
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


def rand_q(rng: np.random.Generator, shape: tuple[int, ...], bits: int, biased: bool = False) -> np.ndarray:
    """Random integers of the symmetric ``bits`` range; ``biased`` keeps them in the top quarter."""
    qmax = qmax_for_bits(bits)
    lo = qmax - max(qmax // 4, 1) if biased else -qmax
    return rng.integers(lo, qmax + 1, size=shape).astype(int_dtype_for_bits(bits))


BIT_PAIRS = [(2, 2), (4, 8), (8, 8), (8, 10), (8, 16), (12, 12), (16, 16), (24, 24)]
SHAPES = [(1, 1, 1), (7, 5, 3), (33, 3001, 29), (5, 1041, 64)]


@pytest.mark.parametrize("bits_a,bits_b", BIT_PAIRS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("biased", [False, True])
def test_int_matmul_grid(bits_a: int, bits_b: int, shape: tuple[int, int, int], biased: bool) -> None:
    m, k, n = shape
    rng = np.random.default_rng(hash((bits_a, bits_b, shape, biased)) % 2**32)
    a = rand_q(rng, (m, k), bits_a, biased)
    b = rand_q(rng, (k, n), bits_b, biased)
    out = int_matmul(a, b)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, ref_matmul(a, b))


def test_plain_float32_is_inexact_where_splitting_is_needed() -> None:
    """The grid really exercises the K splitting: an unsplit float32 GEMM is wrong here."""
    rng = np.random.default_rng(1)
    a = rand_q(rng, (33, 4096), 8, biased=True)
    b = rand_q(rng, (4096, 29), 8, biased=True)
    ref = ref_matmul(a, b)
    assert np.abs(ref).max() > F32_EXACT
    plain = np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.int64)
    assert (plain != ref).any()
    path, chunk = matmul_plan(4096, 127, 127, 33 * 29)
    assert path == "f32" and 1 < -(-4096 // chunk)  # several chunks
    np.testing.assert_array_equal(int_matmul(a, b), ref)
    # 16 x 16 bits: one product alone is ~2^30 > 2^24, so float32 cannot be used at all
    a16 = rand_q(rng, (9, 300), 16, biased=True)
    b16 = rand_q(rng, (300, 11), 16, biased=True)
    ref16 = ref_matmul(a16, b16)
    assert (np.matmul(a16.astype(np.float32), b16.astype(np.float32)).astype(np.int64) != ref16).any()
    np.testing.assert_array_equal(int_matmul(a16, b16), ref16)


PLAN_CASES = [(1152, 127, 127), (3000, 127, 511), (9216, 7, 127), (1152, 127, 32767), (1152, 32767, 32767),
              (1152, 2**23 - 1, 2**23 - 1), (25, 2**29, 2**29), (1, 1, 1), (10**6, 1, 1)]


@pytest.mark.parametrize("k,amax,bmax", PLAN_CASES)
def test_plan_chunks_respect_the_bound(k: int, amax: int, bmax: int) -> None:
    path, chunk = matmul_plan(k, amax, bmax, 256 * 1024)
    assert 1 <= chunk <= k
    if path == "f32":
        assert chunk * amax * bmax <= F32_EXACT
    elif path == "f64":
        assert chunk * amax * bmax <= F64_EXACT
    else:
        assert amax * bmax > F64_EXACT or k * 256 * 1024 < 1e5
    if amax * bmax > F64_EXACT:
        assert path == "i64"
    if (amax, bmax) == (127, 127):
        assert path == "f32"
    if amax * bmax > F32_EXACT:
        assert path != "f32"


@pytest.mark.parametrize("a_shape,b_shape", [
    ((2, 1, 6, 1500), (3, 1500, 4)),
    ((4, 6, 1500), (1500, 5)),
    ((6, 1500), (2, 3, 1500, 5)),
    ((1500,), (1500, 5)),
    ((6, 1500), (1500,)),
    ((1500,), (1500,)),
    ((3, 6, 1500), (1500,)),
])
def test_int_matmul_broadcasting(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    a = rand_q(rng, a_shape, 8, biased=True)
    b = rand_q(rng, b_shape, 8, biased=True)
    out = np.asarray(int_matmul(a, b))
    ref = np.asarray(ref_matmul(a, b))
    assert out.shape == ref.shape and out.dtype == np.int64
    np.testing.assert_array_equal(out, ref)


def test_int_matmul_non_contiguous() -> None:
    rng = np.random.default_rng(3)
    base_a = rand_q(rng, (2200, 40), 8, biased=True)
    base_b = rand_q(rng, (30, 2200 * 2), 8, biased=True)
    a = base_a.T  # (40, 2200), Fortran-ordered view
    b = base_b[:, ::2].T  # (2200, 30), strided view
    assert not a.flags.c_contiguous and not b.flags.c_contiguous and not b.flags.f_contiguous
    np.testing.assert_array_equal(int_matmul(a, b), ref_matmul(a, b))
    bat = rand_q(rng, (3, 2200, 7), 16)
    bt = np.swapaxes(bat, 1, 2)[:, ::2]  # (3, 4, 2200)
    np.testing.assert_array_equal(int_matmul(bt, a.T), ref_matmul(bt, a.T))


@pytest.mark.parametrize("bits_a,bits_b", [(8, 8), (8, 16), (16, 16), (4, 12)])
@pytest.mark.parametrize("signs", [(1, 1), (-1, -1), (1, -1)])
def test_int_matmul_extreme_values(bits_a: int, bits_b: int, signs: tuple[int, int]) -> None:
    m, k, n = 5, 3000, 4
    a = np.full((m, k), signs[0] * qmax_for_bits(bits_a), int_dtype_for_bits(bits_a))
    b = np.full((k, n), signs[1] * qmax_for_bits(bits_b), int_dtype_for_bits(bits_b))
    out = int_matmul(a, b)
    np.testing.assert_array_equal(out, ref_matmul(a, b))
    assert int(out[0, 0]) == k * signs[0] * signs[1] * qmax_for_bits(bits_a) * qmax_for_bits(bits_b)
    # the most negative value of the dtype (outside the symmetric range) is handled too
    a[0, 0] = np.iinfo(a.dtype).min
    np.testing.assert_array_equal(int_matmul(a, b), ref_matmul(a, b))


def test_int_matmul_other_dtypes_and_paths() -> None:
    rng = np.random.default_rng(4)
    # wide int64 operands: float64 with chunking and int64 accumulation (K * P > 2^53)
    a = rng.integers(-(2**23), 2**23, size=(6, 300))
    b = rng.integers(-(2**23), 2**23, size=(300, 5))
    assert matmul_plan(300, 2**23, 2**23, 30)[0] == "f64"
    np.testing.assert_array_equal(int_matmul(a, b), ref_matmul(a, b))
    # beyond float64: exact int64 fallback
    a = rng.integers(-(2**29), 2**29, size=(6, 20)).astype(np.int32)
    b = rng.integers(-(2**29), 2**29, size=(20, 5)).astype(np.int32)
    assert matmul_plan(20, 2**29, 2**29, 30)[0] == "i64"
    np.testing.assert_array_equal(int_matmul(a, b), ref_matmul(a, b))
    # unsigned and mixed dtypes
    a = rng.integers(0, 256, size=(7, 1300)).astype(np.uint8)
    b = rng.integers(-128, 128, size=(1300, 3)).astype(np.int8)
    np.testing.assert_array_equal(int_matmul(a, b), ref_matmul(a, b))
    # zeros and empty operands
    z = np.zeros((3, 4), np.int8)
    np.testing.assert_array_equal(int_matmul(z, b[:4]), np.zeros((3, 3), np.int64))
    assert int_matmul(np.zeros((3, 0), np.int8), np.zeros((0, 2), np.int8)).shape == (3, 2)
    assert int_matmul(np.zeros((0, 4), np.int8), b[:4]).shape == (0, 3)


def test_int_matmul_errors() -> None:
    with pytest.raises(TypeError):
        int_matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.int8))
    with pytest.raises(ValueError):
        int_matmul(np.ones((2, 3), np.int8), np.ones((2, 2), np.int8))
    big = np.full((2, 4), 2**31 - 1, np.int32)
    with pytest.raises(OverflowError):
        int_matmul(big, big.T)


# ---------------------------------------------------------------- quantisation


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16, 24, 32])
def test_choose_exponent(bits: int) -> None:
    qmax = qmax_for_bits(bits)
    rng = np.random.default_rng(bits)
    values = list(10.0 ** rng.uniform(-30, 30, size=200)) + [qmax * 2.0**k for k in range(-40, 40)]
    values += [math.nextafter(qmax * 8.0, math.inf), 1.0, 1e-300]
    for m in values:
        e = choose_exponent(m, bits)
        assert m / 2.0**e <= qmax < m / 2.0 ** (e - 1)
    assert choose_exponent(qmax * 8.0, bits) == 3
    assert choose_exponent(0.0, bits) == -(bits - 1)
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError):
            choose_exponent(bad, bits)


@pytest.mark.parametrize("bits", [2, 3, 8, 12, 16, 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantize_nearest(bits: int, dtype: type) -> None:
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal((50, 40)) * 3.7).astype(dtype)
    q, e = quantize(x, bits)
    qmax = qmax_for_bits(bits)
    assert q.dtype == int_dtype_for_bits(bits)
    assert np.abs(q.astype(np.int64)).max() <= qmax
    assert e == choose_exponent(float(np.abs(x).max()), bits)
    err = np.abs(x.astype(np.float64) - q.astype(np.float64) * 2.0**e)
    assert err.max() <= 2.0 ** (e - 1)
    deq = dequantize(q, e)
    assert deq.dtype == np.float32
    np.testing.assert_array_equal(deq, (q.astype(np.float64) * 2.0**e).astype(np.float32))
    # a fixed exponent clips to the symmetric range
    qc, ec = quantize(x, bits, exp=e - 2)
    assert ec == e - 2 and np.abs(qc.astype(np.int64)).max() == qmax
    assert int(qc.astype(np.int64).min()) == -qmax


def test_quantize_dtypes_and_edges() -> None:
    dts = [int_dtype_for_bits(b) for b in (2, 8, 9, 16, 17, 32)]
    assert dts == [np.int8] * 2 + [np.int16] * 2 + [np.int32] * 2
    q, e = quantize(np.zeros((3, 2), np.float32), 8)
    assert e == -7 and not q.any()
    x = np.array([1e-40, -3e-39], np.float32)  # subnormal inputs: the scale 2^-e overflows float32
    q, e = quantize(x, 16)
    assert e < -140 and q.tolist() == np.rint(x.astype(np.float64) * 2.0**-e).astype(np.int64).tolist()
    with pytest.raises(ValueError):
        quantize(np.array([1.0, np.nan]), 8)
    with pytest.raises(ValueError):
        quantize(np.ones(3), 8, rounding="stochastic")  # no rng
    with pytest.raises(ValueError):
        quantize(np.ones(3), 1)


def test_stochastic_rounding_unbiased_and_deterministic() -> None:
    values = np.array([0.3, -0.3, 2.75, -5.5, 0.01, 100.999, -126.5], np.float32)
    n = 40000
    x = np.repeat(values[:, None], n, axis=1)
    q, e = quantize(x, 8, "stochastic", np.random.default_rng(7), exp=0)
    assert e == 0
    qf = q.astype(np.float64)
    lo = np.floor(values.astype(np.float64))[:, None]
    assert np.all((qf == lo) | (qf == lo + 1))
    frac = values.astype(np.float64) - np.floor(values.astype(np.float64))
    sigma = np.sqrt(np.maximum(frac * (1 - frac), 1e-4) / n)
    assert np.all(np.abs(qf.mean(axis=1) - values) < 5 * sigma)
    q2, _ = quantize(x, 8, "stochastic", np.random.default_rng(7), exp=0)
    np.testing.assert_array_equal(q, q2)
    q3, _ = quantize(x, 8, "stochastic", np.random.default_rng(8), exp=0)
    assert (q != q3).any()
    # an exactly representable grid value is never rounded away
    qi, _ = quantize(np.full(1000, 3.0, np.float32), 8, "stochastic", np.random.default_rng(0), exp=0)
    assert np.all(qi == 3)


def ref_requant(acc: list[int], bits: int) -> tuple[list[int], int]:
    """Python-int reference: smallest s with max|acc| <= qmax 2^s, then round half up."""
    qmax = qmax_for_bits(bits)
    m = max(abs(v) for v in acc)
    s = 0
    while m > qmax * 2**s:
        s += 1
    half = 2 ** (s - 1) if s else 0
    return [(v + half) // 2**s for v in acc], s


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
def test_requantize_nearest_matches_reference(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for scale in (0, 1, 100, 10**5, 10**9, 10**15):
        acc = rng.integers(-scale, scale + 1, size=300)
        acc[:4] = [8, -8, 12, -12]  # ties at small shifts
        q, e = requantize(acc, -9, bits)
        ref, s = ref_requant(acc.tolist(), bits)
        assert q.dtype == int_dtype_for_bits(bits) and e == -9 + s
        assert q.tolist() == ref
        assert np.abs(q.astype(np.int64)).max() <= qmax_for_bits(bits)
        if scale < 2**50:  # float64 round-half-up agrees where it is exact
            np.testing.assert_array_equal(q, np.floor(acc / 2.0**s + 0.5).astype(np.int64))
    # values next to the int64 limits (overflow-safe shift)
    acc = np.array([2**63 - 1, -(2**63) + 1, 2**62 + 2**55, -(2**62) - 2**56 + 1, 0, 1], np.int64)
    if bits == 2:
        acc[1] = -(2**63)  # needs the largest shift, 63
    q, e = requantize(acc, 0, bits)
    ref, s = ref_requant(acc.tolist(), bits)
    assert q.tolist() == ref and e == s


def test_requantize_stochastic() -> None:
    acc = np.repeat(np.array([1000, -1000, 12345, -77777, 5], np.int64)[:, None], 20000, axis=1)
    q, e = requantize(acc, 3, 8, "stochastic", np.random.default_rng(0))
    s = e - 3
    assert 77777 <= 127 * 2**s and 77777 > 127 * 2 ** (s - 1)  # the smallest shift that fits
    exact = acc[:, 0] / 2.0**s
    qf = q.astype(np.float64)
    lo = np.floor(exact)[:, None]
    assert np.all((qf == lo) | (qf == lo + 1))
    assert np.all(np.abs(qf.mean(axis=1) - exact) < 5 * 0.5 / np.sqrt(acc.shape[1]))
    q2, _ = requantize(acc, 3, 8, "stochastic", np.random.default_rng(0))
    np.testing.assert_array_equal(q, q2)
    q3, _ = requantize(acc, 3, 8, "stochastic", np.random.default_rng(1))
    assert (q != q3).any()
    big = np.array([2**63 - 1, -(2**63) + 1, 3], np.int64)
    qb, eb = requantize(big, 0, 16, "stochastic", np.random.default_rng(2))
    assert eb == 49  # 32767 * 2^48 < 2^63 - 1 <= 32767 * 2^49
    assert qb.tolist()[0] in (16383, 16384) and qb.tolist()[1] in (-16384, -16383)
    assert qb.tolist()[2] in (0, 1)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_shifts(dtype: type) -> None:
    info = np.iinfo(dtype)
    q = np.array([0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, 7, -7, info.max, info.min], dtype)
    for k in [*range(0, 9), 62, 63, 64, 70]:
        out = shift_right_round(q, k)
        assert out.dtype == q.dtype
        assert out.tolist() == [(v + (2 ** (k - 1) if k else 0)) // 2**k for v in q.tolist()]
    small = q[:13].astype(np.int8)
    up = shift_left(small, 3, dtype)
    assert up.dtype == np.dtype(dtype) and up.tolist() == [v * 8 for v in small.tolist()]
    np.testing.assert_array_equal(shift_right_round(up, 3), small.astype(dtype))
    with pytest.raises(OverflowError):
        shift_left(q, 1)
    assert shift_left(np.zeros(3, dtype), 80).tolist() == [0, 0, 0]


def test_pixel_ranges_cover_the_contraction_and_respect_the_row_bound() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(-127, 128, (2, 4, 3000)).astype(np.float32)  # (G, M, K), like a grouped dy
    a[rng.random(a.shape) < 0.9] = 0  # sparse, like quantised gradients: far fewer pieces
    b_bound, limit = 128, F32_EXACT // 64  # a small limit so that several pieces are needed
    ranges = pixel_ranges(a, b_bound, limit)
    assert ranges[0][0] == 0 and ranges[-1][1] == a.shape[-1]
    assert all(r[1] == s[0] and r[0] < r[1] for r, s in zip(ranges, ranges[1:]))
    rows = np.abs(a.astype(np.int64)).reshape(-1, a.shape[-1])
    assert all(rows[:, k0:k1].sum(axis=1).max() * b_bound <= limit for k0, k1 in ranges)
    uniform = -(-a.shape[-1] // (limit // (127 * b_bound)))  # pieces the worst-case bound would need
    assert 1 < len(ranges) < uniform


def test_pixel_ranges_make_a_float32_product_exact_where_one_gemm_rounds() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(100, 128, (3, 5000)).astype(np.int64)  # same signs: the sums do not cancel
    b = rng.integers(100, 128, (5000, 4)).astype(np.int64)
    ref = a @ b
    assert ref.max() > F32_EXACT
    af, bf = a.astype(np.float32), b.astype(np.float32)
    ranges = pixel_ranges(af, 127, F32_EXACT)
    assert len(ranges) > 1
    np.testing.assert_array_equal(exact_float_matmul(af, bf, ranges, 5000 * 127 * 127), ref)
    assert not np.array_equal((af @ bf).astype(np.int64), ref)


@pytest.mark.parametrize("shape", [(1, 1), (4, 0), (3, 7)])
def test_pixel_ranges_of_zero_or_empty_operands_are_one_range(shape: tuple) -> None:
    assert pixel_ranges(np.zeros(shape, np.float32), 127, F32_EXACT) == [(0, shape[1])]

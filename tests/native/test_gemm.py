"""The C integer GEMMs against a plain int64 numpy product, bit for bit.

Every variant (portable, each SIMD variant this CPU has, the dispatched entry point) on a grid
of odd shapes, at the dtype extremes, in the three layouts of a training step, with
accumulation, at 1 and 2 threads; s32 outputs are compared modulo 2^32 (the documented
wrap-around) where the exact sum does not fit.
"""

from __future__ import annotations

import numpy as np
import pytest

from rctc.native.kernels import Kernels
from tests.native.conftest import simd_variants

SHAPES = [(1, 1, 1), (1, 3, 17), (3, 1, 31), (17, 31, 65), (31, 65, 3), (65, 17, 129), (129, 129, 31),
          (4, 16, 256), (5, 33, 257), (33, 5, 513), (2, 129, 600)]
TYPES = [(np.int8, np.int8, np.int32), (np.int8, np.int8, np.int64), (np.int16, np.int8, np.int32),
         (np.int16, np.int8, np.int64), (np.int8, np.int16, np.int32), (np.int8, np.int16, np.int64)]


def wrap(ref: np.ndarray, dtype: type) -> np.ndarray:
    """The int64 reference reduced to ``dtype`` modulo its width (numpy's astype wraps)."""
    return ref.astype(dtype)


def ref_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) @ b.astype(np.int64)


def rand_int(rng: np.random.Generator, dtype: type, shape: tuple[int, ...], extreme: bool) -> np.ndarray:
    info = np.iinfo(dtype)
    if extreme:  # only the two ends of the range (including the asymmetric minimum)
        return rng.choice(np.array([info.min, info.max, -info.max], dtype), size=shape)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)


def variants(k: Kernels, ta: type, tb: type) -> list[str]:
    direct = ["portable", *simd_variants(k)] if tb == np.int8 else []
    return ["", *direct]  # s8 x s16 exists only as the dispatched (transposing) entry point


@pytest.mark.parametrize("types", TYPES, ids=lambda t: "x".join(np.dtype(x).name for x in t))
@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_gemm_grid(kernels: Kernels, types: tuple[type, type, type], extreme: bool) -> None:
    ta, tb, tc = types
    rng = np.random.default_rng(2 * TYPES.index(types) + extreme)
    for m, n, kk in SHAPES:
        a = rand_int(rng, ta, (m, kk), extreme)
        b = rand_int(rng, tb, (kk, n), extreme)
        want = wrap(ref_matmul(a, b), tc)
        for v in variants(kernels, ta, tb):
            got = kernels.gemm(a, b, tc, variant=v)
            assert np.array_equal(got, want), (v, m, n, kk)


@pytest.mark.parametrize("types", TYPES[:4], ids=lambda t: "x".join(np.dtype(x).name for x in t))
def test_training_layouts(kernels: Kernels, types: tuple[type, type, type]) -> None:
    """Y = X W^T, dX = dY W, dW = dY^T X with the operands as stored (transposed views, no copy)."""
    ta, tb, tc = types  # ta is the weight's dtype here when int16, else int8
    rng = np.random.default_rng(7)
    batch, k_in, n_out = 33, 65, 17
    x = rand_int(rng, np.int8, (batch, k_in), False)
    w = rand_int(rng, ta, (n_out, k_in), False)
    dy = rand_int(rng, np.int8, (batch, n_out), False)
    for v in variants(kernels, ta, tb):
        # forward: a = W (n_out, k_in) against X^T gives Y^T; Y itself is X W^T (s8 x s16 when W is int16)
        y_t = kernels.gemm(w, x.T, tc, variant=v)
        assert np.array_equal(y_t, wrap(ref_matmul(w, x.T), tc))
        dx_t = kernels.gemm(w.T, dy.T, tc, variant=v)  # dX^T = W^T dY^T
        assert np.array_equal(dx_t, wrap(ref_matmul(w.T, dy.T), tc))
        if ta == np.int8:
            dw = kernels.gemm(dy.T, x, tc, variant=v)  # dW = dY^T X
            assert np.array_equal(dw, wrap(ref_matmul(dy.T, x), tc))
    if ta == np.int16:  # the s8 x s16 entry points in the natural orientation
        assert np.array_equal(kernels.gemm(x, w.T, tc), wrap(ref_matmul(x, w.T), tc))
        assert np.array_equal(kernels.gemm(dy, w, tc), wrap(ref_matmul(dy, w), tc))


def test_strided_output_and_accumulate(kernels: Kernels) -> None:
    rng = np.random.default_rng(3)
    a = rand_int(rng, np.int8, (31, 65), False)
    b = rand_int(rng, np.int8, (65, 17), False)
    for v in variants(kernels, np.int8, np.int8):
        base = rng.integers(-2**40, 2**40, size=(17, 31))
        out = base.copy().T  # a transposed (column-major) output
        kernels.gemm(a, b, np.int64, out=out, accumulate=True, variant=v)
        assert np.array_equal(out, base.T + ref_matmul(a, b)), v
        out32 = rng.integers(-2**31, 2**31, size=(31, 17)).astype(np.int32)
        want = (out32.astype(np.int64) + ref_matmul(a, b)).astype(np.int32)
        kernels.gemm(a, b, np.int32, out=out32, accumulate=True, variant=v)
        assert np.array_equal(out32, want), v


def test_s32_wraps_like_the_portable_kernel(kernels: Kernels) -> None:
    """int16 x int8 extremes over K = 600 exceed int32: every variant wraps modulo 2^32."""
    a = np.full((5, 600), -32768, np.int16)
    b = np.full((600, 19), -128, np.int8)
    exact = ref_matmul(a, b)
    assert exact.max() > 2**31  # the case really overflows
    for v in variants(kernels, np.int16, np.int8):
        assert np.array_equal(kernels.gemm(a, b, np.int32, variant=v), exact.astype(np.int32)), v
        assert np.array_equal(kernels.gemm(a, b, np.int64, variant=v), exact), v


@pytest.mark.parametrize("types", TYPES[:4], ids=lambda t: "x".join(np.dtype(x).name for x in t))
def test_thread_count_does_not_change_bits(kernels: Kernels, types: tuple[type, type, type]) -> None:
    """Shapes big enough for the library to split them (> 2^22 multiply-adds), split by rows and by columns."""
    ta, tb, tc = types
    rng = np.random.default_rng(11)
    for m, n, kk in ((257, 131, 129), (33, 1031, 131)):
        a = rand_int(rng, ta, (m, kk), False)
        b = rand_int(rng, tb, (kk, n), False)
        want = wrap(ref_matmul(a, b), tc)
        for v in variants(kernels, ta, tb):
            one = kernels.gemm(a, b, tc, variant=v, nthreads=1)
            two = kernels.gemm(a, b, tc, variant=v, nthreads=2)
            assert np.array_equal(one, want) and np.array_equal(two, want), v


def test_bad_arguments_are_value_errors(kernels: Kernels) -> None:
    a = np.zeros((3, 4), np.int8)
    with pytest.raises(ValueError, match="do not multiply"):
        kernels.gemm(a, np.zeros((5, 2), np.int8))
    with pytest.raises(ValueError, match="no kernel"):
        kernels.gemm(a.astype(np.int32), np.zeros((4, 2), np.int8))

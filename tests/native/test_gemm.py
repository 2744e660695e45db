"""The C integer GEMMs against a plain int64 numpy product, bit for bit.

Every variant (portable, each SIMD variant this CPU has, the dispatched entry point) on a grid
of odd shapes, at the dtype extremes, in the three layouts of a training step, with
accumulation, at 1 and 2 threads; s32 outputs are compared modulo 2^32 (the documented
wrap-around) where the exact sum does not fit.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest

from rctc.native.kernels import Kernels
from tests.native.conftest import simd_variants

SHAPES = [(1, 1, 1), (1, 3, 17), (3, 1, 31), (17, 31, 65), (31, 65, 3), (65, 17, 129), (129, 129, 31),
          (4, 16, 256), (5, 33, 257), (33, 5, 513), (2, 129, 600),
          # K blocks (512, or 256 for s16 x s8 -> s64) of balanced length with an odd tail; several
          # column and row blocks; K = 16 / 64 (row-strip tile order) beside K = 65 (panel order)
          (70, 150, 1100), (131, 19, 1031), (7, 300, 64), (67, 1000, 16), (150, 47, 65)]
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
    """Shapes big enough for the library to split them (> 2^22 multiply-adds), split by rows and by
    columns; threads take chunks from a shared counter, so this also runs chunks on varying threads."""
    ta, tb, tc = types
    rng = np.random.default_rng(11)
    for m, n, kk in ((257, 131, 129), (33, 1031, 131), (129, 65, 1031)):
        a = rand_int(rng, ta, (m, kk), False)
        b = rand_int(rng, tb, (kk, n), False)
        want = wrap(ref_matmul(a, b), tc)
        for v in variants(kernels, ta, tb):
            for t in (1, 2, 3, 8):  # 3 and 8: uneven chunks, more threads than cores
                assert np.array_equal(kernels.gemm(a, b, tc, variant=v, nthreads=t), want), (v, t)


def test_bad_arguments_are_value_errors(kernels: Kernels) -> None:
    a = np.zeros((3, 4), np.int8)
    with pytest.raises(ValueError, match="do not multiply"):
        kernels.gemm(a, np.zeros((5, 2), np.int8))
    with pytest.raises(ValueError, match="no kernel"):
        kernels.gemm(a.astype(np.int32), np.zeros((4, 2), np.int8))
    with pytest.raises(ValueError, match="dispatched entry point"):
        kernels.gemm(a, np.zeros((4, 2), np.int16), variant="portable")


def test_dispatch_follows_the_cpu_flags(kernels: Kernels) -> None:
    """The library's CPU detection agrees with the kernel's /proc/cpuinfo, and dispatch uses the best variant."""
    flags: set[str] = set()
    if platform.machine().lower() in ("x86_64", "amd64") and Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        assert kernels.has_variant("avx2") == ("avx2" in flags)
        vnni = {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags  # the kernel lists only OS-enabled state
        assert kernels.has_variant("avx512vnni") == vnni
    assert kernels.has_variant("portable")
    best = [v for v in ("avx512vnni", "avx2") if kernels.has_variant(v)]
    assert kernels.isa == (best[0] if best else "portable")


def layout(x: np.ndarray, kind: str) -> np.ndarray:
    """``x`` stored row-major ("c"), column-major ("f"), as a strided view of a larger array
    ("s"), or reversed in both axes (negative strides, "r"); the values are unchanged."""
    if kind == "c":
        return np.ascontiguousarray(x)
    if kind == "f":
        return np.asfortranarray(x)
    if kind == "s":
        big = np.zeros((2 * x.shape[0] + 1, 3 * x.shape[1] + 2), x.dtype)
        view = big[1::2, 2::3][: x.shape[0], : x.shape[1]]
        view[...] = x
        return view
    return np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]


LAYOUTS = [("c", "c"), ("c", "f"), ("f", "c"), ("f", "f"), ("s", "c"), ("c", "s"), ("r", "f"), ("f", "r")]


@pytest.mark.parametrize("types", TYPES[:4], ids=lambda t: "x".join(np.dtype(x).name for x in t))
@pytest.mark.parametrize("lay", LAYOUTS, ids=lambda lay: "".join(lay))
def test_operand_layouts(kernels: Kernels, types: tuple[type, type, type], lay: tuple[str, str]) -> None:
    """Every operand layout (row- and column-major, strided, negative strides) at the dtype
    extremes, into a fresh, a transposed and an accumulated output; ("c", "f") is the weight
    gradient (both operands K-contiguous), tried with M < N and M > N."""
    ta, tb, tc = types
    rng = np.random.default_rng(5 + TYPES.index(types))
    for m, n, kk in ((3, 70, 529), (70, 3, 529), (33, 47, 40), (5, 17, 1)):
        a = layout(rand_int(rng, ta, (m, kk), True), lay[0])
        b = layout(rand_int(rng, tb, (kk, n), True), lay[1])
        exact = ref_matmul(a, b)
        for v in variants(kernels, ta, tb):
            assert np.array_equal(kernels.gemm(a, b, tc, variant=v), wrap(exact, tc)), (v, m, n, kk)
            out_t = np.zeros((n, m), tc).T
            kernels.gemm(a, b, tc, out=out_t, variant=v)
            assert np.array_equal(out_t, wrap(exact, tc)), (v, m, n, kk, "transposed out")
            base = rand_int(rng, tc, (m, n), False) // 4
            out = base.copy()
            kernels.gemm(a, b, tc, out=out, accumulate=True, variant=v)
            assert np.array_equal(out, wrap(base.astype(np.int64) + exact, tc)), (v, m, n, kk, "accumulate")


def test_weight_gradient_layout_threads(kernels: Kernels) -> None:
    """dW = dY cols^T with both operands K-contiguous (the ResNet-20 shape, K shortened), big enough
    to be split between threads: the bits do not depend on the thread count."""
    rng = np.random.default_rng(13)
    dy = rand_int(rng, np.int8, (16, 5000), False)
    cols = rand_int(rng, np.int8, (144, 5000), False)
    for tc in (np.int32, np.int64):
        want = wrap(ref_matmul(dy, cols.T), tc)
        for v in variants(kernels, np.int8, np.int8):
            for t in (1, 2, 3):
                assert np.array_equal(kernels.gemm(dy, cols.T, tc, variant=v, nthreads=t), want), (v, tc, t)

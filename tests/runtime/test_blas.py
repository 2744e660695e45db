"""The accumulating GEMM on numpy views (rctc.runtime.blas) against np.matmul, with and without CBLAS."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.runtime import blas


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["packed", "row-window", "transposed", "vector"])
def test_gemm_matches_matmul_on_views(gemm_path: str, dtype: type, layout: str) -> None:
    rng = np.random.default_rng(0)
    wide = rng.integers(-20, 21, (9, 40)).astype(dtype)
    a = rng.integers(-20, 21, (6, 9)).astype(dtype)
    if layout == "packed":
        b = wide.copy()
    elif layout == "row-window":
        b = wide[:, 3:31]  # rows not packed: a kernel tap of a flat padded input
    elif layout == "transposed":
        b = rng.integers(-20, 21, (40, 9)).astype(dtype)[5:33].T
    else:
        b = wide[:, 7:8]
    out_store = np.full((6, b.shape[1] + 4), 7, dtype)
    out = out_store[:, 2:2 + b.shape[1]]  # an output view inside a wider array
    blas.gemm(a, b, out)
    np.testing.assert_array_equal(out, a @ b)
    blas.gemm(a, b, out, accumulate=True)
    np.testing.assert_array_equal(out, 2 * (a @ b))
    assert (out_store[:, :2] == 7).all() and (out_store[:, 2 + b.shape[1]:] == 7).all()  # nothing outside


def test_gemm_unsupported_layouts_and_dtypes_fall_back(gemm_path: str) -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 6)).astype(np.float16)
    b = rng.standard_normal((6, 5)).astype(np.float16)
    out = np.zeros((4, 5), np.float16)
    np.testing.assert_array_equal(blas.gemm(a, b, out), a @ b)
    a32 = rng.standard_normal((4, 12)).astype(np.float32)[:, ::2]  # no unit stride on either axis
    b32 = rng.standard_normal((6, 5)).astype(np.float32)
    out32 = np.zeros((4, 5), np.float32)
    np.testing.assert_allclose(blas.gemm(a32, b32, out32), a32 @ b32, rtol=1e-6)


def test_gemm_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="do not match"):
        blas.gemm(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), np.ones((2, 2), np.float32))


def test_gemm_empty_contraction_zeroes_or_keeps(gemm_path: str) -> None:
    out = np.ones((2, 3), np.float32)
    blas.gemm(np.ones((2, 0), np.float32), np.ones((0, 3), np.float32), out, accumulate=True)
    assert (out == 1).all()
    blas.gemm(np.ones((2, 0), np.float32), np.ones((0, 3), np.float32), out)
    assert (out == 0).all()


def test_small_products_run_on_one_thread_and_restore_the_count() -> None:
    from threadpoolctl import threadpool_info

    def counts() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = counts()
    if not before or max(before) <= 1:
        pytest.skip("no multi-threaded BLAS here")
    with blas.blas_threads_for(blas.OPENBLAS_ONE_THREAD_MACS + 1):
        assert counts() == [1] * len(before)
    assert counts() == before
    with blas.blas_threads_for(blas.SMALL_GEMM_MACS):
        assert counts() == before


def test_gemm_refuses_read_only_output_and_handles_overlap(gemm_path: str) -> None:
    a = np.arange(4, dtype=np.float32).reshape(2, 2)
    frozen = np.frombuffer(bytes(16), np.float32).reshape(2, 2)
    with pytest.raises(ValueError, match="read-only"):
        blas.gemm(a, a, frozen)
    b = a.copy()
    want = a @ b
    blas.gemm(a, b, a)  # out is an operand: must still equal np.matmul's answer
    np.testing.assert_array_equal(a, want)

"""Integer GEMM-class kernels of rct mode are bit-exact against plain int64 references.

The references are written from the definitions with int64 numpy arithmetic (sliding
windows + einsum, or explicit loops), independent of the im2col / BLAS paths under test.
Bitwidths go from 2 to 16, and shapes include contractions long enough that an unsplit
float32 accumulation would round.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from rctc.fixedpoint import int_dtype_for_bits
from rctc.runtime.kernels.int_products import INT_PRODUCTS


def _rand(rng: np.random.Generator, shape: tuple[int, ...], bits: int, extreme: bool = False) -> np.ndarray:
    qmax = (1 << (bits - 1)) - 1
    if extreme:
        q = np.full(shape, qmax, np.int64) * rng.choice([-1, 1], size=shape)
    else:
        q = rng.integers(-qmax, qmax + 1, shape)
    return q.astype(int_dtype_for_bits(bits))


def _ref_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int, dil: int, group: int) -> np.ndarray:
    x = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    w = w.astype(np.int64)
    kh, kw = w.shape[2:]
    win = sliding_window_view(x, ((kh - 1) * dil + 1, (kw - 1) * dil + 1), axis=(2, 3))[..., ::dil, ::dil]
    win = win[:, :, ::stride, ::stride]  # n, c, oh, ow, kh, kw
    m, cg = w.shape[0], w.shape[1]
    outs = []
    for gi in range(group):
        wg = w[gi * (m // group):(gi + 1) * (m // group)]
        xg = win[:, gi * cg:(gi + 1) * cg]
        outs.append(np.einsum("nchwij,mcij->nmhw", xg, wg))
    return np.concatenate(outs, axis=1)


def _ref_conv_grads(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, pad: int, dil: int,
                    group: int) -> tuple[np.ndarray, np.ndarray]:
    """dX and dW by explicit loops over output positions (int64)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape, np.int64)
    dy = dy.astype(np.int64)
    w = w.astype(np.int64)
    mg = m // group
    for oh, ow in itertools.product(range(dy.shape[2]), range(dy.shape[3])):
        for gi in range(group):
            rows = slice(oh * stride, oh * stride + (kh - 1) * dil + 1, dil)
            cols = slice(ow * stride, ow * stride + (kw - 1) * dil + 1, dil)
            chans = slice(gi * cg, (gi + 1) * cg)
            d = dy[:, gi * mg:(gi + 1) * mg, oh, ow]  # n, mg
            patch = xp[:, chans, rows, cols]  # n, cg, kh, kw
            dw[gi * mg:(gi + 1) * mg] += np.einsum("nm,ncij->mcij", d, patch)
            dxp[:, chans, rows, cols] += np.einsum("nm,mcij->ncij", d, w[gi * mg:(gi + 1) * mg])
    return dxp[:, :, pad:pad + h, pad:pad + wd], dw


CONV_CASES = [
    # (n, c, h, m, k, stride, pad, dil, group, bits_x, bits_w)
    (2, 3, 7, 4, 3, 2, 1, 1, 1, 8, 8),
    (2, 4, 6, 4, 3, 1, 1, 1, 4, 4, 12),
    (1, 4, 9, 8, 3, 1, 2, 2, 2, 2, 16),
    (2, 2, 5, 3, 1, 1, 0, 1, 1, 16, 16),
    (3, 8, 8, 4, 3, 2, 0, 1, 1, 12, 8),
    # fast paths: stride-1 group-1 data gradient as a conv of dy (flipped kernel), incl. dilation
    # and pads > (k-1)*d (falls back to col2im); depthwise taps (stride 1 flat grid, stride 2,
    # 16-bit operands: int64 accumulators); channel multiplier 2 (grouped GEMM)
    (2, 5, 6, 3, 3, 1, 1, 1, 1, 8, 8),
    (2, 3, 7, 4, 3, 1, 1, 2, 1, 8, 16),
    (2, 3, 5, 2, 1, 1, 1, 1, 1, 8, 8),
    (2, 6, 7, 6, 3, 1, 1, 1, 6, 8, 8),
    (2, 6, 7, 6, 3, 2, 1, 1, 6, 8, 8),
    (2, 4, 6, 4, 3, 1, 2, 2, 4, 16, 16),
    (1, 3, 5, 6, 3, 1, 1, 1, 3, 8, 8),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("extreme", [False, True])
def test_int_conv_and_grads_bit_exact(case: tuple, extreme: bool) -> None:
    n, c, h, m, k, stride, pad, dil, group, bx, bw = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x = _rand(rng, (n, c, h, h), bx, extreme)
    w = _rand(rng, (m, c // group, k, k), bw, extreme)
    attrs = {"strides": [stride] * 2, "pads": [pad] * 4, "dilations": [dil] * 2, "group": group,
             "kernel_shape": [k, k]}
    y = INT_PRODUCTS["IntConv"](x, w, attrs)
    np.testing.assert_array_equal(y, _ref_conv(x, w, stride, pad, dil, group))
    dy = _rand(rng, y.shape, 8, extreme)
    dx_ref, dw_ref = _ref_conv_grads(dy, x, w, stride, pad, dil, group)
    dx = INT_PRODUCTS["IntConvGradInput"](dy, w, {**attrs, "input_shape": list(x.shape)})
    dw = INT_PRODUCTS["IntConvGradWeight"](dy, x, {**attrs, "weight_shape": list(w.shape)})
    np.testing.assert_array_equal(dx, dx_ref)
    np.testing.assert_array_equal(dw, dw_ref)


@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[1] == c[3] == c[8] > 1],
                         ids=lambda c: "-".join(map(str, c)))
def test_depthwise_conv_in_channel_blocks_bit_exact(monkeypatch: pytest.MonkeyPatch, case: tuple) -> None:
    """Depthwise convolutions (forward, data and weight gradients) run in blocks of channels: one
    channel per block gives the reference's integers too."""
    from rctc.runtime.kernels import conv as conv_kernels

    monkeypatch.setattr(conv_kernels, "DEPTHWISE_BLOCK", 1)
    n, c, h, m, k, stride, pad, dil, group, bx, bw = case
    rng = np.random.default_rng(hash(case) % 2**32 + 1)
    x = _rand(rng, (n, c, h, h), bx)
    w = _rand(rng, (m, c // group, k, k), bw)
    attrs = {"strides": [stride] * 2, "pads": [pad] * 4, "dilations": [dil] * 2, "group": group,
             "kernel_shape": [k, k]}
    y = INT_PRODUCTS["IntConv"](x, w, attrs)
    np.testing.assert_array_equal(y, _ref_conv(x, w, stride, pad, dil, group))
    dy = _rand(rng, y.shape, 8)
    dx_ref, dw_ref = _ref_conv_grads(dy, x, w, stride, pad, dil, group)
    np.testing.assert_array_equal(INT_PRODUCTS["IntConvGradInput"](dy, w, {**attrs, "input_shape": list(x.shape)}),
                                  dx_ref)
    np.testing.assert_array_equal(INT_PRODUCTS["IntConvGradWeight"](dy, x, {**attrs, "weight_shape": list(w.shape)}),
                                  dw_ref)


@pytest.mark.parametrize("bits", [(2, 2), (4, 8), (8, 8), (8, 16), (12, 12), (16, 16)])
def test_int_gemm_and_matmul_bit_exact_with_long_contractions(bits: tuple[int, int]) -> None:
    rng = np.random.default_rng(bits[0] * 100 + bits[1])
    k = 4096  # 4096 * 127 * 127 > 2^24: plain float32 accumulation would round
    a = _rand(rng, (16, k), bits[0], extreme=True)
    b = _rand(rng, (k, 12), bits[1], extreme=True)
    ref = a.astype(np.int64) @ b.astype(np.int64)
    np.testing.assert_array_equal(INT_PRODUCTS["IntGemm"](a, b, {}), ref)
    np.testing.assert_array_equal(INT_PRODUCTS["IntGemm"](a.T.copy(), b.T.copy(), {"transA": 1, "transB": 1}), ref)
    a3 = _rand(rng, (3, 5, 70), bits[0])
    b3 = _rand(rng, (70, 6), bits[1])
    np.testing.assert_array_equal(INT_PRODUCTS["IntMatMul"](a3, b3, {}),
                                  np.einsum("bik,kj->bij", a3.astype(np.int64), b3.astype(np.int64)))


def test_long_contraction_would_be_inexact_in_plain_float32() -> None:
    rng = np.random.default_rng(1)
    a = np.full((16, 4096), 127, np.int8)
    b = rng.integers(100, 128, (4096, 12)).astype(np.int8)
    ref = a.astype(np.int64) @ b.astype(np.int64)
    plain = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)
    assert np.abs(ref).max() > 2**24 and not np.array_equal(plain, ref)
    np.testing.assert_array_equal(INT_PRODUCTS["IntGemm"](a, b, {}), ref)


def test_conv_weight_gradient_long_batch_contraction() -> None:
    """N*P = 4096 products of 8-bit values per weight: the f32 GEMM must be split (and stay exact)."""
    rng = np.random.default_rng(7)
    x = rng.integers(100, 128, (16, 2, 16, 16)).astype(np.int8)  # same signs: the sums do not cancel
    w = _rand(rng, (3, 2, 3, 3), 8, extreme=True)
    attrs = {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1, "kernel_shape": [3, 3]}
    dy = np.full((16, 3, 16, 16), 127, np.int8)
    _, dw_ref = _ref_conv_grads(dy, x, w, 1, 1, 1, 1)
    assert np.abs(dw_ref).max() > 2**24
    dw = INT_PRODUCTS["IntConvGradWeight"](dy, x, {**attrs, "weight_shape": list(w.shape)})
    np.testing.assert_array_equal(dw, dw_ref)
    np.testing.assert_array_equal(INT_PRODUCTS["IntConv"](x, w, attrs, np.int32),
                                  _ref_conv(x, w, 1, 1, 1, 1).astype(np.int32))


def test_small_gemms_run_single_threaded_and_restore_the_thread_count() -> None:
    from rctc.runtime.intmath import blas_matmul

    rng = np.random.default_rng(3)
    a = rng.standard_normal((8, 16)).astype(np.float32)
    b = rng.standard_normal((3, 16, 5)).astype(np.float32)
    np.testing.assert_array_equal(blas_matmul(a, b), np.matmul(a, b))
    out = np.empty((3, 8, 5), np.float32)
    assert blas_matmul(a, b, out=out) is out
    from threadpoolctl import threadpool_info

    before = [i["num_threads"] for i in threadpool_info()]  # the process-wide counts are restored
    blas_matmul(a, b)
    assert [i["num_threads"] for i in threadpool_info()] == before


@pytest.mark.parametrize(("shape", "k"), [((3, 2, 8, 8), [2, 2]), ((2, 3, 7, 9), [2, 2]), ((2, 2, 4, 4, 4), [2, 2, 2])])
def test_max_pool_grad_tiled_fast_path_first_max_on_ties(shape: tuple, k: list) -> None:
    """stride == kernel windows (a reshape, not the strided loop): ReLU-like inputs with many tied
    zeros route the gradient to the first maximum in row-major order, like the explicit loop."""
    from rctc.runtime.kernels.grad_pool import max_pool_grad

    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal(shape).astype(np.float32), 0)
    outs = [s // kk for s, kk in zip(shape[2:], k)]
    dy = rng.standard_normal(shape[:2] + tuple(outs)).astype(np.float32)
    ref = np.zeros_like(x)
    for n, c in itertools.product(range(shape[0]), range(shape[1])):
        for o in itertools.product(*[range(v) for v in outs]):
            win = x[(n, c) + tuple(slice(oi * ki, oi * ki + ki) for oi, ki in zip(o, k))]
            idx = np.unravel_index(np.argmax(win), win.shape)
            ref[(n, c) + tuple(oi * ki + ii for oi, ki, ii in zip(o, k, idx))] += dy[(n, c) + o]
    np.testing.assert_array_equal(max_pool_grad(dy, x, k, k, [1] * len(k), [0] * (2 * len(k))), ref)


@pytest.mark.parametrize("rows", [(0,), (7,), (2, 5), (600,)])
def test_gather_gradient_scatter_add_equals_a_plain_loop(rows: tuple[int, ...]) -> None:
    """The sorted reduceat scatter-add of IntGatherGrad against a Python loop: repeated, negative
    and unused indices, int8 / int16 rows at their extremes (600 repeats of 127 leave int8)."""
    from rctc.runtime.kernels.int_elementwise import scatter_add_rows

    rng = np.random.default_rng(len(rows))
    shape = (9, 3, 2)
    idx = rng.integers(-9, 9, rows)
    for dt in (np.int8, np.int16):
        d = rng.integers(-127, 128, rows + shape[1:]).astype(dt)
        if d.size:
            d.reshape(-1)[: d.size // 2] = np.iinfo(dt).max
        ref = np.zeros(shape, np.int64)
        for k, i in enumerate(idx.reshape(-1).tolist()):
            ref[i] += d.reshape(-1, *shape[1:])[k].astype(np.int64)
        got = scatter_add_rows(shape, idx, d)
        assert got.dtype == np.int64 and np.array_equal(got, ref)
    for bad in (9, -10):
        with pytest.raises(IndexError, match="out of range"):
            scatter_add_rows(shape, np.array([0, bad]), np.zeros((2, 3, 2), np.int8))


@pytest.mark.parametrize(("dtype", "rows"), [(np.int8, 1000), (np.int16, 8), (np.int16, 40000), (np.int32, 9)])
def test_int_reduce_sum_equals_the_int64_sum(dtype: type, rows: int) -> None:
    """IntReduceSum (a bias gradient) at every dtype, on both sides of its int32 bound (int16
    past 65536 elements), with every element at the dtype's extreme: the plain int64 sum."""
    from rctc.ir import Node
    from rctc.runtime.kernels.registry import KERNELS, KernelContext

    node = Node.__new__(Node)
    node.name, node.op_type, node.meta, node.attrs = "sum", "IntReduceSum", {}, {"axes": [0, 1], "shape": [1, 3]}
    d = np.full((rows, 2, 3), np.iinfo(dtype).min, dtype)
    d[::2] = np.iinfo(dtype).max
    acc, e = KERNELS["IntReduceSum"](KernelContext(), node, d, np.array(-5, np.int32))
    assert acc.dtype == np.int64 and int(e) == -5
    assert np.array_equal(acc, d.astype(np.int64).sum(axis=(0, 1)).reshape(1, 3))

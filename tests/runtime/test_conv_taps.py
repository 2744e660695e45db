"""Stride-1 convolutions as one GEMM per kernel tap (rctc.runtime.kernels._conv_taps).

Float: the Conv kernel against onnxruntime and its gradients against finite differences, in 1-D,
2-D and 3-D (the tap path is rank-agnostic). Integer: the tap sums, their exact grouping and the
data-dependent pieces of the weight gradient against plain int64 references, on the CBLAS
binding and on the np.matmul fallback.
"""

from __future__ import annotations

import numpy as np
import pytest

from rctc.runtime.intmath import F32_EXACT
from rctc.runtime.kernels import _conv_taps as taps
from rctc.runtime.kernels.conv import conv_geom
from rctc.runtime.kernels.int_products import INT_PRODUCTS
from tests.passes.gradcheck import check_op_grad
from tests.runtime.test_forward_kernels import check, f32
from tests.runtime.test_int_kernels import _rand, _ref_conv, _ref_conv_grads

STRIDE1 = [
    ((2, 3, 11), (4, 3, 3), {"pads": [1, 2]}),
    ((2, 3, 6, 7), (5, 3, 3, 3), {"pads": [1, 0, 2, 1], "dilations": [1, 2]}),
    ((1, 2, 4, 5, 3), (3, 2, 3, 2, 2), {"pads": [1, 0, 1, 1, 1, 0]}),
    ((1, 2, 6, 6), (3, 2, 2, 2), {"auto_pad": "SAME_LOWER"}),
]


@pytest.mark.parametrize("xs,ws,attrs", STRIDE1, ids=[str(c[0]) for c in STRIDE1])
def test_float_conv_any_rank_matches_onnxruntime(xs: tuple, ws: tuple, attrs: dict) -> None:
    assert taps.applicable(conv_geom(xs, ws, attrs))
    check("Conv", [f32(*xs), f32(*ws, lo=-1, hi=1), f32(ws[0])], attrs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("xs,ws,attrs", STRIDE1[:3], ids=[str(c[0]) for c in STRIDE1[:3]])
def test_float_conv_gradients_any_rank_match_finite_differences(xs: tuple, ws: tuple, attrs: dict) -> None:
    rng = np.random.default_rng(3)
    inputs = {"x": rng.standard_normal(xs), "w": rng.standard_normal(ws)}
    check_op_grad("Conv", inputs, {"kernel_shape": list(ws[2:]), **attrs})


@pytest.mark.parametrize("group_taps", [1, 2, 4])
def test_int_tap_conv_exact_in_every_grouping(gemm_path: str, group_taps: int) -> None:
    """12-bit x 8-bit, 16 channels: 9 taps of near-extreme values overflow one float32 sum, so
    the taps are summed in groups and the groups in float64."""
    rng = np.random.default_rng(group_taps)
    x = rng.integers(1800, 2048, (2, 16, 6, 6)).astype(np.int16)
    w = (rng.integers(100, 128, (3, 16, 3, 3)) * rng.choice([-1, 1], (3, 16, 3, 3))).astype(np.int8)
    w[0] = np.abs(w[0])  # output channel 0: sums of up to 144 positive products, ~2^24.9
    attrs = {"pads": [1, 1, 1, 1]}
    g = conv_geom(x.shape, w.shape, attrs)
    ref = _ref_conv(x, w, 1, 1, 1, 1)
    assert np.abs(ref).max() > F32_EXACT
    assert taps.taps_per_group(16, 2047 * 127, np.float32) == 4
    y = taps.conv(x, taps.tap_weights(w, np.float32), g, np.float32, group_taps)
    got = y.reshape(3, 2, *g.padded)[:, :, :6, :6].swapaxes(0, 1)
    np.testing.assert_array_equal(got.astype(np.int64), ref)


@pytest.mark.parametrize("case", [(2, 5, 6, 3, 3, 1, 1, 8, 8), (2, 3, 7, 4, 3, 1, 2, 8, 16),
                                  (1, 16, 5, 4, 3, 1, 1, 12, 8)], ids=str)
def test_int_conv_kernels_exact_on_both_gemm_paths(gemm_path: str, case: tuple) -> None:
    n, c, h, m, k, pad, dil, bx, bw = case
    rng = np.random.default_rng(sum(case))
    x = _rand(rng, (n, c, h, h), bx, extreme=True)
    w = _rand(rng, (m, c, k, k), bw, extreme=True)
    attrs = {"strides": [1, 1], "pads": [pad] * 4, "dilations": [dil] * 2, "group": 1, "kernel_shape": [k, k]}
    y = INT_PRODUCTS["IntConv"](x, w, attrs)
    np.testing.assert_array_equal(y, _ref_conv(x, w, 1, pad, dil, 1))
    dy = _rand(rng, y.shape, 8, extreme=True)
    dx_ref, dw_ref = _ref_conv_grads(dy, x, w, 1, pad, dil, 1)
    np.testing.assert_array_equal(INT_PRODUCTS["IntConvGradInput"](dy, w, {**attrs, "input_shape": list(x.shape)}),
                                  dx_ref)
    np.testing.assert_array_equal(INT_PRODUCTS["IntConvGradWeight"](dy, x, {**attrs, "weight_shape": list(w.shape)}),
                                  dw_ref)


def test_int_weight_gradient_dense_and_sparse_dy_exact() -> None:
    """Dense extreme dy needs many pieces, sparse dy few: both exact against int64."""
    rng = np.random.default_rng(11)
    x = rng.integers(100, 128, (16, 3, 12, 12)).astype(np.int8)  # same signs: sums do not cancel
    w = _rand(rng, (4, 3, 3, 3), 8)
    attrs = {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1, "kernel_shape": [3, 3],
             "weight_shape": [4, 3, 3, 3]}
    for density in (1.0, 0.05):
        dy = np.where(rng.random((16, 4, 12, 12)) < density, 127, 0).astype(np.int8)
        _, dw_ref = _ref_conv_grads(dy, x, w, 1, 1, 1, 1)
        np.testing.assert_array_equal(INT_PRODUCTS["IntConvGradWeight"](dy, x, attrs), dw_ref)

"""Integer GEMM-class kernels (rct mode): IntConv, IntGemm, IntMatMul, IntConvGradInput, IntConvGradWeight.

Each multiplies integer operands exactly and returns the accumulator in the node's output dtype
(int32 or int64, chosen at compile time from the worst-case bound) plus its exponent
``ea + eb``. ``INT_PRODUCTS`` maps the op type to the bare product
``fn(a, b, attrs, out_dtype=int64, node=None)``, which FusedIntUpdate reuses (``node`` only keys
the per-node geometry cache).

Convolutions use the one-GEMM channel-major layout of
:mod:`rctc.runtime.kernels._im2col`: the operands are converted to float32 (or float64) while
the columns are built, the product is one BLAS GEMM whose contraction is split into chunks
small enough that every partial sum is an exactly representable integer
(:func:`rctc.runtime.intmath.matmul_plan` / :func:`~rctc.runtime.intmath.exact_float_matmul`,
proof in :func:`~rctc.runtime.intmath.int_matmul`), and the col2im sums of the data gradient
run in a float format whose exact range covers the whole worst-case sum (``M/G * prod(kernel)``
products), else in int64. The final layout copy converts to the integer output dtype.
Depthwise convolutions use integer multiply-adds per kernel tap (int32 when the bound allows,
else int64): exact by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rctc.ir import Node
from rctc.runtime.intmath import (
    F32_EXACT,
    F64_EXACT,
    abs_bound,
    exact_float_matmul,
    int_matmul,
    matmul_plan,
    pixel_ranges,
)
from rctc.runtime.kernels import _conv_taps as taps
from rctc.runtime.kernels._im2col import (
    ConvGeom,
    cached_plan,
    col2im_channel_major,
    cols_channel_major,
    from_channel_major,
    to_channel_major,
    to_grid,
)
from rctc.runtime.kernels.conv import conv_geom, depthwise_forward
from rctc.runtime.kernels.grad_linear import depthwise_grad_input, depthwise_grad_weight, flipped_weight, grad_geom
from rctc.runtime.kernels.registry import KernelContext, register

Product = Callable[..., np.ndarray]
_I32_MAX = 2**31 - 1


_amax = abs_bound  # 8-bit operands: the dtype bound (no pass over the data), else exact max |x|


def _float_type(path: str) -> type:
    return {"f32": np.float32, "f64": np.float64}.get(path, np.int64)


def _int_acc(bound: int) -> type:
    """Integer accumulator dtype for sums bounded by ``bound`` (int32 if it fits, else int64)."""
    return np.int32 if bound <= _I32_MAX else np.int64


def _geom(node: Node | None, key: tuple, build: Callable[[], ConvGeom]) -> ConvGeom:
    return build() if node is None else cached_plan(node, key, build)


def int_conv(x: np.ndarray, w: np.ndarray, attrs: dict[str, Any], out_dtype: Any = np.int64,
             node: Node | None = None) -> np.ndarray:
    g = _geom(node, (x.shape, w.shape), lambda: conv_geom(x.shape, w.shape, attrs))
    ax, aw = _amax(x), _amax(w)
    kg = (g.c // g.group) * g.kk
    if g.depthwise:
        return depthwise_forward(x, w, g, _int_acc(g.kk * ax * aw), out_dtype)
    path, chunk = matmul_plan(kg, aw, ax, g.m * g.n * g.p)
    ft = _float_type(path)
    group_taps = taps.taps_per_group(g.c, ax * aw, ft) if path != "i64" else 0
    if taps.applicable(g) and group_taps and kg * ax * aw <= F64_EXACT:
        y = taps.conv(x, taps.tap_weights(w, ft), g, ft, group_taps)
        return from_channel_major(y, g.n, g.out_spatial, out_dtype, g.padded)
    cols = cols_channel_major(x, g, ft).reshape(g.group, kg, -1)  # (G, C/G*K, N*Q)
    wg = w.reshape(g.group, g.m // g.group, kg).astype(ft)
    if path == "i64":
        y = np.matmul(wg, cols)
    else:
        y = exact_float_matmul(wg[0] if g.group == 1 else wg, cols[0] if g.group == 1 else cols, chunk,
                               kg * ax * aw)
    return from_channel_major(y.reshape(g.m, -1), g.n, g.out_spatial, out_dtype, g.grid)


def int_gemm(a: np.ndarray, b: np.ndarray, attrs: dict[str, Any], out_dtype: Any = np.int64,
             node: Node | None = None) -> np.ndarray:
    if attrs.get("transA", 0):
        a = a.T
    if attrs.get("transB", 0):
        b = b.T
    return int_matmul(a, b, out_dtype)


def int_matmul_op(a: np.ndarray, b: np.ndarray, attrs: dict[str, Any], out_dtype: Any = np.int64,
                  node: Node | None = None) -> np.ndarray:
    return int_matmul(a, b, out_dtype)


def int_conv_grad_input(dy: np.ndarray, w: np.ndarray, attrs: dict[str, Any], out_dtype: Any = np.int64,
                        node: Node | None = None) -> np.ndarray:
    g = _geom(node, (dy.shape, w.shape),
              lambda: grad_geom(attrs, [int(v) for v in attrs["input_shape"]], dy.shape))
    ady, aw = _amax(dy), _amax(w)
    mg = g.m // g.group
    bound = mg * g.kk * ady * aw  # every dx element sums at most M/G * prod(kernel) products
    if g.depthwise:
        return depthwise_grad_input(dy, w, g, _int_acc(bound), out_dtype)
    tg = g.transposed()
    if tg is not None:  # stride 1, group 1: dx = conv(dy, flipped W^T), contraction M*prod(kernel)
        path, chunk = matmul_plan(g.m * g.kk, aw, ady, g.c * g.n * tg.p)
        ft = _float_type(path)
        group_taps = taps.taps_per_group(g.m, ady * aw, ft) if path != "i64" else 0
        if taps.applicable(tg) and group_taps and bound <= F64_EXACT:
            dx = taps.conv(dy, taps.tap_weights(w, ft, flip=True), tg, ft, group_taps)
            return from_channel_major(dx, g.n, g.in_spatial, out_dtype, tg.padded)
        cols = cols_channel_major(dy, tg, ft)
        wt2 = flipped_weight(w, ft)
        dx = np.matmul(wt2, cols) if path == "i64" else exact_float_matmul(wt2, cols, chunk, bound)
        return from_channel_major(dx, g.n, g.in_spatial, out_dtype, tg.grid)
    path, chunk = matmul_plan(mg, aw, ady, g.c * g.kk * g.n * g.p)
    ft = _float_type(path)
    dyc = to_channel_major(dy, ft).reshape(g.group, mg, -1)  # (G, M/G, N*P)
    wt = w.reshape(g.group, mg, -1).astype(ft).transpose(0, 2, 1)  # (G, C/G*K, M/G)
    if path == "i64":
        cols = np.matmul(wt, dyc)
    else:
        cols = exact_float_matmul(wt[0] if g.group == 1 else wt, dyc[0] if g.group == 1 else dyc, chunk,
                                  mg * ady * aw)
    acc = cols.dtype
    if acc.kind == "f":
        acc = np.dtype(np.float32 if acc == np.float32 and bound <= F32_EXACT else
                       np.float64 if bound <= F64_EXACT else np.int64)
    if acc.kind == "i" and cols.dtype.kind == "f":
        cols = cols.astype(np.int64)
    return col2im_channel_major(cols.reshape(g.c * g.kk, -1), g, out_dtype, acc)


def int_conv_grad_weight(dy: np.ndarray, x: np.ndarray, attrs: dict[str, Any], out_dtype: Any = np.int64,
                         node: Node | None = None) -> np.ndarray:
    g = _geom(node, (dy.shape, x.shape), lambda: grad_geom(attrs, x.shape, dy.shape))
    ady, ax = _amax(dy), _amax(x)
    if g.depthwise:
        if g.flat_taps() is not None and g.n * math.prod(g.padded) * ady * ax <= F64_EXACT:
            dw = depthwise_grad_weight(dy, x, g, np.float64, np.float64)  # exact: sums < 2^53
        else:
            dw = depthwise_grad_weight(dy, x, g, _int_acc(ady * ax), np.int64)
        return dw.astype(out_dtype, copy=False)
    mg, kg = g.m // g.group, (g.c // g.group) * g.kk
    npix = g.n * math.prod(g.grid)  # contraction length (columns off the outputs hold dy = 0)
    path, chunk = matmul_plan(npix, ady, ax, g.m * kg)
    ft = _float_type(path)
    cols = cols_channel_major(x, g, ft).reshape(g.group, kg, -1).transpose(0, 2, 1)  # (G, N*Q, C/G*K)
    dyc = to_grid(dy, g, ft).reshape(g.group, mg, -1)  # (G, M/G, N*Q)
    if path == "f32" and chunk < npix:  # the data-dependent bound usually needs far fewer pieces
        chunk = pixel_ranges(dyc, ax, F32_EXACT)
    if g.group == 1:
        cols, dyc = cols[0], dyc[0]
    if path == "i64":
        dw = np.matmul(dyc, cols)
    else:
        dw = exact_float_matmul(dyc, cols, chunk, npix * ady * ax)
    return dw.reshape((g.m, g.c // g.group) + g.kernel).astype(out_dtype, copy=False)


INT_PRODUCTS: dict[str, Product] = {
    "IntConv": int_conv,
    "IntGemm": int_gemm,
    "IntMatMul": int_matmul_op,
    "IntConvGradInput": int_conv_grad_input,
    "IntConvGradWeight": int_conv_grad_weight,
}


def _make_kernel(product: Product) -> Callable[..., tuple]:
    def kernel(ctx: KernelContext, node: Node, qa: np.ndarray, ea: np.ndarray, qb: np.ndarray,
               eb: np.ndarray) -> tuple:
        acc = product(qa, qb, node.attrs, node.outputs[0].dtype, node)
        return acc, np.array(int(ea) + int(eb), np.int32)

    kernel.__doc__ = f"{product.__name__}: exact integer product and its exponent."
    return kernel


for _op, _fn in INT_PRODUCTS.items():
    register(_op)(_make_kernel(_fn))

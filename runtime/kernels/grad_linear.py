"""Backward kernels of Conv: ConvGradInput (data gradient), ConvGradWeight, ConvGradBias.

Node conventions (domain ``rctc``; emitted by ``rctc.passes.grad_rules.linear``):

* ``ConvGradInput(dy, w) -> dx``: attrs ``kernel_shape``, ``strides``, ``pads`` (explicit ONNX
  ``[begins..., ends...]``, auto_pad already resolved), ``dilations``, ``group``, ``input_shape``.
* ``ConvGradWeight(dy, x) -> dw``: the same window attrs plus ``weight_shape``.
* ``ConvGradBias(dy) -> db``: sum of ``dy`` over batch and spatial axes.

Both products are one BLAS matmul over the whole batch (channel-major ``(C*K, N*P)`` columns:
``N*P`` folded into one GEMM dimension); grouped convolutions add a group batch axis to that
matmul, never a Python loop over groups. The data gradient scatters its columns back with
``prod(kernel)`` strided slice-adds into a padded buffer (no ``np.add.at``, no loop over
pixels); input rows no window reaches (stride > 1 with odd sizes) keep a zero gradient.
Depthwise convolutions skip the GEMM (a loop over kernel taps of broadcast multiply-adds; the
helpers are shared with the integer kernels). Float32 stays float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rctc.ir import Node
from rctc.runtime.intmath import blas_matmul
from rctc.runtime.kernels import _conv_taps as taps
from rctc.runtime.kernels import conv as conv_kernels
from rctc.runtime.kernels._im2col import (
    ConvGeom,
    cached_plan,
    col2im_channel_major,
    cols_channel_major,
    from_channel_major,
    pad_spatial,
    to_channel_major,
    to_grid,
)
from rctc.runtime.kernels.conv import depthwise_forward
from rctc.runtime.kernels.registry import KernelContext, register


def _window_attrs(attrs: dict[str, Any], k: int) -> tuple[list[int], list[int], list[int], list[int], int]:
    kernel = [int(v) for v in attrs["kernel_shape"]]
    strides = [int(v) for v in attrs.get("strides", [1] * k)]
    dilations = [int(v) for v in attrs.get("dilations", [1] * k)]
    pads = [int(v) for v in attrs.get("pads", [0] * (2 * k))]
    group = int(attrs.get("group", 1))
    if len(kernel) != k or len(strides) != k or len(dilations) != k or len(pads) != 2 * k:
        raise ValueError(f"window attributes do not match {k} spatial axes")
    return kernel, strides, dilations, pads, group


def grad_geom(attrs: dict[str, Any], x_shape: Sequence[int], dy_shape: Sequence[int]) -> ConvGeom:
    """:class:`ConvGeom` of a conv gradient node (explicit window attrs, output size from ``dy``)."""
    kernel, strides, dilations, pads, group = _window_attrs(attrs, len(dy_shape) - 2)
    return ConvGeom(int(x_shape[0]), int(x_shape[1]), int(dy_shape[1]), group, tuple(kernel), tuple(strides),
                    tuple(dilations), tuple(pads), tuple(int(s) for s in x_shape[2:]),
                    tuple(int(s) for s in dy_shape[2:]))


def depthwise_grad_input(dy: np.ndarray, w: np.ndarray, g: ConvGeom, dtype: Any,
                         out_dtype: Any = None) -> np.ndarray:
    """dX ``(N, C, *in)`` of a depthwise conv, products and sums in ``dtype``, result in ``out_dtype``.

    Stride 1: a depthwise conv of ``dy`` with the flipped kernel (:func:`depthwise_forward`).
    Otherwise per kernel tap one multiply and one strided add into a padded accumulator.
    """
    out_dtype = dtype if out_dtype is None else out_dtype
    tg = g.depthwise_transposed
    if tg is not None:
        k = len(g.kernel)
        wflip = w[(slice(None), slice(None)) + (slice(None, None, -1),) * k]
        return depthwise_forward(dy, wflip, tg, dtype, out_dtype)
    wk = w.reshape(g.c, g.kk).astype(dtype)
    lead = (slice(None), slice(None))
    out = np.empty((g.n, g.c) + tuple(g.in_spatial), dtype=out_dtype)
    for c0, c1 in _channel_blocks(g, math.prod(g.padded)):  # channels are independent
        dyd = dy[:, c0:c1].astype(dtype)
        bshape = (1, c1 - c0) + (1,) * len(g.kernel)
        acc = np.zeros((g.n, c1 - c0) + g.padded, dtype=dtype)
        tmp = np.empty(dyd.shape, dtype=dtype)
        for i, off in enumerate(np.ndindex(*g.kernel)):
            np.multiply(dyd, wk[c0:c1, i].reshape(bshape), out=tmp)
            acc[lead + g.tap_slices(off)] += tmp
        out[:, c0:c1] = acc[lead + g.inner()]
    return out


def _channel_blocks(g: ConvGeom, per_sample: int) -> list[tuple[int, int]]:
    """Channel ranges of a depthwise convolution whose working arrays (``per_sample`` elements per
    sample and channel) hold about :data:`~rctc.runtime.kernels.conv.DEPTHWISE_BLOCK` elements."""
    cb = max(1, conv_kernels.DEPTHWISE_BLOCK // max(1, g.n * per_sample))
    return [(c0, min(c0 + cb, g.c)) for c0 in range(0, g.c, cb)]


def depthwise_grad_weight(dy: np.ndarray, x: np.ndarray, g: ConvGeom, dtype: Any, sum_dtype: Any) -> np.ndarray:
    """dW ``(C, 1, *kernel)`` of a depthwise conv: per tap, products in ``dtype`` summed in ``sum_dtype``.

    Stride 1: channel-major flat taps of the padded input (as :func:`depthwise_forward`) against
    ``dy`` placed on the same grid (zeros elsewhere), one long row per channel, multiplied and
    summed in ``dtype`` by one einsum per tap (``sum_dtype`` only sets the result's dtype; integer
    callers pass float64, exact while every partial sum stays below 2^53).
    """
    dw = np.empty((g.c, g.kk), dtype=sum_dtype)
    flat = g.flat_taps()
    lead = (slice(None), slice(None))
    if flat is not None:
        offs, length = flat
        q = math.prod(g.padded)
        total = (g.n - 1) * q + length
        for c0, c1 in _channel_blocks(g, q):  # channels are independent: one row each
            xf = to_channel_major(x[:, c0:c1], dtype, g.pads).reshape(c1 - c0, -1)  # (C', N*Q)
            grid = np.zeros((c1 - c0, g.n) + g.padded, dtype=dtype)
            grid[lead + tuple(slice(0, o) for o in g.out_spatial)] = dy[:, c0:c1].swapaxes(0, 1)
            dyf = grid.reshape(c1 - c0, -1)[:, :total]
            for i, off in enumerate(offs):  # one fused multiply-sum per tap (einsum's SIMD kernel)
                dw[c0:c1, i] = np.einsum("cq,cq->c", xf[:, off:off + total], dyf)
        return dw.reshape((g.c, 1) + g.kernel)
    xp = pad_spatial(x, g.pads, dtype=dtype)
    dyd = dy.astype(dtype, copy=False)
    tmp = np.empty(dyd.shape, dtype=dtype)
    for i, off in enumerate(np.ndindex(*g.kernel)):
        np.multiply(xp[lead + g.tap_slices(off)], dyd, out=tmp)
        dw[:, i] = tmp.reshape(g.n, g.c, -1).sum(axis=2, dtype=sum_dtype).sum(axis=0)
    return dw.reshape((g.c, 1) + g.kernel)


def _grad_weight(dy: np.ndarray, x: np.ndarray, g: ConvGeom) -> np.ndarray:
    dt = dy.dtype if dy.dtype.kind == "f" else np.dtype(np.float64)
    if g.depthwise:
        return depthwise_grad_weight(dy, x, g, dt, dt)
    cols = cols_channel_major(x, g, dt)  # (C*K, N*Q): the contraction axis N*Q is contiguous
    dyc = to_grid(dy, g, dt)  # (M, N*Q), zeros off the outputs
    if g.group == 1:
        dw = blas_matmul(dyc, cols.T)
    else:
        kg = (g.c // g.group) * g.kk
        dw = blas_matmul(dyc.reshape(g.group, g.m // g.group, -1), cols.reshape(g.group, kg, -1).transpose(0, 2, 1))
    return dw.reshape((g.m, g.c // g.group) + g.kernel)


def flipped_weight(w: np.ndarray, dtype: Any) -> np.ndarray:
    """``W'(C, M*prod(kernel))`` with ``W'[c, m, k] = W[m, c, K-1-k]``: the weight of the data
    gradient of a stride-1, group-1 conv seen as a forward conv (:meth:`ConvGeom.transposed`)."""
    k = w.ndim - 2
    wf = w.swapaxes(0, 1)[(slice(None), slice(None)) + (slice(None, None, -1),) * k]
    return np.ascontiguousarray(wf, dtype=dtype).reshape(w.shape[1], -1)


def _grad_input(dy: np.ndarray, w: np.ndarray, g: ConvGeom) -> np.ndarray:
    dt = dy.dtype if dy.dtype.kind == "f" else np.dtype(np.float64)
    if g.depthwise:
        return depthwise_grad_input(dy, w, g, dt)
    tg = g.transposed()
    if taps.applicable(tg):
        return from_channel_major(taps.conv(dy, taps.tap_weights(w, dt, flip=True), tg, dt), g.n, g.in_spatial, dt,
                                  tg.padded)
    if tg is not None:  # im2col of dy + one GEMM straight into dx: copies instead of col2im's adds
        cols = cols_channel_major(dy, tg, dt)
        return from_channel_major(blas_matmul(flipped_weight(w, dt), cols), g.n, g.in_spatial, dt, tg.grid)
    dyc = to_channel_major(dy, dt).reshape(g.m, -1)  # (M, N*P)
    mg, kg = g.m // g.group, (g.c // g.group) * g.kk
    wg = w.reshape(g.group, mg, kg).astype(dt, copy=False)
    if g.group == 1:
        cols = blas_matmul(wg[0].T, dyc)  # (C*K, N*P)
    else:
        cols = blas_matmul(wg.transpose(0, 2, 1), dyc.reshape(g.group, mg, -1))  # (G, Kg, N*P)
    return col2im_channel_major(cols.reshape(g.c * g.kk, -1), g, dt)


@register("ConvGradInput")
def conv_grad_input_kernel(ctx: KernelContext, node: Node, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Gradient of Conv w.r.t. its input X (shape ``input_shape``)."""
    g = cached_plan(node, (dy.shape, w.shape),
                    lambda: grad_geom(node.attrs, [int(v) for v in node.attrs["input_shape"]], dy.shape))
    return _grad_input(dy, w, g)


@register("ConvGradWeight")
def conv_grad_weight_kernel(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of Conv w.r.t. its weight W (shape ``weight_shape``)."""
    g = cached_plan(node, (dy.shape, x.shape), lambda: grad_geom(node.attrs, x.shape, dy.shape))
    dw = _grad_weight(dy, x, g)
    want = tuple(int(v) for v in node.attrs.get("weight_shape", dw.shape))
    if dw.shape != want:
        raise ValueError(f"ConvGradWeight produced {dw.shape}, weight_shape is {want}")
    return dw


@register("ConvGradBias")
def conv_grad_bias_kernel(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    """Gradient of Conv w.r.t. its bias: sum of dy over batch and spatial axes."""
    return dy.sum(axis=(0,) + tuple(range(2, dy.ndim)), dtype=dy.dtype)

"""Conv forward kernel: channel-major im2col (one strided copy per kernel offset) + ONE BLAS GEMM.

Supports 1-D/2-D/3-D spatial inputs, explicit pads and ``auto_pad`` (SAME_UPPER, SAME_LOWER,
VALID, NOTSET), strides, dilations, groups and an optional bias. The columns are laid out
``(C*prod(kernel), N*P)`` so the whole batch is one GEMM ``W(M, C*K) @ cols`` (grouped
convolutions: one matmul with a group batch axis, never a Python loop over groups or pixels).
Depthwise convolutions (one channel per group) skip the GEMM: a loop over the kernel taps with
a broadcast multiply-add over the whole batch. :func:`depthwise_forward` is shared with the
integer kernels.
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.runtime.intmath import blas_matmul
from rctc.runtime.kernels import _conv_taps as taps
from rctc.runtime.kernels._im2col import (
    ConvGeom,
    cached_plan,
    cols_channel_major,
    from_channel_major,
    geom_from_attrs,
    pad_spatial,
    to_channel_major,
)
from rctc.runtime.kernels.registry import KernelContext, register


def conv_geom(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict) -> ConvGeom:
    """Validated geometry of an ONNX Conv with input ``x_shape`` and weight ``w_shape``."""
    if len(x_shape) < 3:
        raise ValueError(f"Conv input must be N x C x spatial..., got shape {x_shape}")
    c, m = x_shape[1], w_shape[0]
    group = int(attrs.get("group", 1))
    kernel = [int(v) for v in attrs.get("kernel_shape", w_shape[2:])]
    if list(w_shape[2:]) != kernel:
        raise ValueError(f"kernel_shape {kernel} does not match weight shape {w_shape}")
    if c % group or m % group or w_shape[1] != c // group:
        raise ValueError(f"channels {c} / weight {w_shape} inconsistent with group={group}")
    return geom_from_attrs(x_shape, m, attrs, kernel)


#: elements of the working arrays of one channel block of a stride-1 depthwise convolution: they
#: stay in the cache and come from the allocator's free lists instead of fresh pages
DEPTHWISE_BLOCK = 1 << 17


def depthwise_forward(x: np.ndarray, w: np.ndarray, g: ConvGeom, dtype: np.dtype | type,
                      out_dtype: np.dtype | type | None = None) -> np.ndarray:
    """Depthwise conv ``(N, C, *in) -> (N, C, *out)``: one multiply-add per kernel tap in ``dtype``.

    Stride 1 runs channel-major on the flattened padded grid of the whole batch: a tap is then ONE
    contiguous slice ``x[c, off:off+L]`` per channel (:meth:`ConvGeom.flat_taps`; the outputs sit
    at the leading corner of each sample's padded grid and are cropped by the final copy, which
    also converts to ``out_dtype``, default ``dtype``), in blocks of channels
    (:data:`DEPTHWISE_BLOCK`). Other strides: strided taps in NC layout.
    """
    out_dtype = dtype if out_dtype is None else out_dtype
    wk = w.reshape(g.c, g.kk).astype(dtype)
    flat = g.flat_taps()
    if flat is not None:
        offs, length = flat
        q = math.prod(g.padded)
        total = (g.n - 1) * q + length
        out = np.empty((g.n, g.c) + tuple(g.out_spatial), dtype=out_dtype)
        cb = max(1, DEPTHWISE_BLOCK // (g.n * q))  # channels per block (each channel is independent)
        for c0 in range(0, g.c, cb):
            c1 = min(c0 + cb, g.c)
            xf = to_channel_major(x[:, c0:c1], dtype, g.pads).reshape(c1 - c0, -1)  # (C', N*Q)
            acc = np.empty((c1 - c0, g.n * q), dtype=dtype)
            a = acc[:, :total]
            tmp = np.empty(a.shape, dtype=dtype)
            for i, off in enumerate(offs):
                if i == 0:
                    np.multiply(xf[:, off:off + total], wk[c0:c1, i:i + 1], out=a)
                else:
                    np.multiply(xf[:, off:off + total], wk[c0:c1, i:i + 1], out=tmp)
                    a += tmp
            from_channel_major(acc, g.n, g.out_spatial, out_dtype, g.padded, out=out[:, c0:c1])
        return out
    xp = pad_spatial(x, g.pads, dtype=dtype)
    bshape = (1, g.c) + (1,) * len(g.kernel)
    lead = (slice(None), slice(None))
    y = tmp = None
    for i, off in enumerate(np.ndindex(*g.kernel)):
        src = xp[lead + g.tap_slices(off)]
        wi = wk[:, i].reshape(bshape)
        if y is None:
            y = np.multiply(src, wi)
            tmp = np.empty_like(y)
        else:
            np.multiply(src, wi, out=tmp)
            y += tmp
    assert y is not None
    return y.astype(out_dtype, copy=False)


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict,
                 g: ConvGeom | None = None) -> np.ndarray:
    """ONNX Conv on numpy float arrays (``attrs`` as in ``node.attrs``); reused by other kernels."""
    g = g or conv_geom(x.shape, w.shape, attrs)
    dt = x.dtype
    if g.depthwise:
        y = depthwise_forward(x, w, g, dt)
    elif taps.applicable(g):
        y = from_channel_major(taps.conv(x, taps.tap_weights(w, dt), g, dt), g.n, g.out_spatial, dt, g.padded)
    else:
        cols = cols_channel_major(x, g, dt)  # (C*K, N*Q)
        kg = (g.c // g.group) * g.kk
        wg = w.reshape(g.group, g.m // g.group, kg).astype(dt, copy=False)
        yc = blas_matmul(wg[0], cols) if g.group == 1 else blas_matmul(wg, cols.reshape(g.group, kg, -1))
        y = from_channel_major(yc.reshape(g.m, -1), g.n, g.out_spatial, dt, g.grid)
    if b is not None:
        y += b.astype(y.dtype, copy=False).reshape((1, g.m) + (1,) * len(g.out_spatial))
    return y


@register("Conv")
def conv(
    ctx: KernelContext, node: Node, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None
) -> np.ndarray:
    """ONNX Conv (opset 1-22 forms)."""
    g = cached_plan(node, (x.shape, w.shape), lambda: conv_geom(x.shape, w.shape, node.attrs))
    return conv_forward(x, w, b, node.attrs, g)

"""Kernels of Resize, Pad and their gradients (definitions: rctc/ops/layout.py; the taps:
rctc/ops/resample.py).

Each op is applied one axis at a time. Resize reads, per output position of a resized axis, two
input positions with weights (nearest: one with weight 1); ``ResizeGrad`` scatters ``dY`` back
through the same taps with ``np.add.at`` (positions read several times accumulate). Pad reads one
input position per output position (or writes the constant); ``PadGrad`` scatters back likewise.
Float dtypes are kept; nothing writes into its inputs.
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.ops.resample import pad_index, pad_plan, resize_plan, resize_taps
from rctc.runtime.kernels.registry import KernelContext, register


def _gather(x: np.ndarray, axis: int, i0: np.ndarray, i1: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = -1
    a = np.take(x, i0, axis=axis)
    if not np.any(w1):
        return a
    return a * w0.reshape(shape).astype(x.dtype) + np.take(x, i1, axis=axis) * w1.reshape(shape).astype(x.dtype)


def _scatter(dy: np.ndarray, axis: int, n_in: int, idx: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """``dx[idx[o]] += w[o] * dy[o]`` along ``axis`` (entries with idx < 0 are dropped)."""
    d = np.moveaxis(dy, axis, 0)
    dx = np.zeros((n_in,) + d.shape[1:], dtype=dy.dtype)
    keep = idx >= 0
    src = d[keep] if w is None else d[keep] * w[keep].reshape((-1,) + (1,) * (d.ndim - 1)).astype(dy.dtype)
    np.add.at(dx, idx[keep], src)
    return np.moveaxis(dx, 0, axis)


@register("Resize")
def resize(ctx: KernelContext, node: Node, x: np.ndarray, roi: np.ndarray | None = None,
           scales: np.ndarray | None = None, sizes: np.ndarray | None = None) -> np.ndarray:
    scale, out = resize_plan(node.attrs, x.shape, scales, sizes, f"Resize {node.name!r}")
    y = x
    for a, (n_in, n_out) in enumerate(zip(x.shape, out)):
        if n_in != n_out or scale[a] != 1.0:
            y = _gather(y, a, *resize_taps(node.attrs, n_in, n_out, scale[a]))
    return y.astype(x.dtype, copy=False)


@register("ResizeGrad")
def resize_grad(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    shape = [int(v) for v in node.attrs["input_shape"]]
    scale = [float(v) for v in node.attrs["scales"]]
    dx = dy
    for a in reversed(range(dy.ndim)):
        n_in, n_out = shape[a], dx.shape[a]
        if n_in != n_out or scale[a] != 1.0:
            i0, i1, w0, w1 = resize_taps(node.attrs, n_in, n_out, scale[a])
            part = _scatter(dx, a, n_in, i0, w0)
            if np.any(w1):
                part = part + _scatter(dx, a, n_in, i1, w1)
            dx = part
    return dx


@register("Pad")
def pad(ctx: KernelContext, node: Node, x: np.ndarray, pads: np.ndarray, constant_value: np.ndarray | None = None,
        axes: np.ndarray | None = None) -> np.ndarray:
    mode = str(node.attrs.get("mode", "constant"))
    begin, end = pad_plan(node.attrs, x.shape, pads, axes, f"Pad {node.name!r}")
    value = x.dtype.type(0) if constant_value is None or not np.asarray(constant_value).size else \
        np.asarray(constant_value).reshape(-1)[0].astype(x.dtype)
    y = x
    for a in range(x.ndim):
        if begin[a] == 0 and end[a] == 0:
            continue
        idx = pad_index(mode, x.shape[a], begin[a], end[a])
        y = np.take(y, np.maximum(idx, 0), axis=a) if y.shape[a] else \
            np.zeros(y.shape[:a] + (idx.size,) + y.shape[a + 1:], x.dtype)
        if mode == "constant" and np.any(idx < 0):
            shape = [1] * x.ndim
            shape[a] = -1
            y = np.where((idx < 0).reshape(shape), value, y)
    return y.astype(x.dtype, copy=False)


@register("PadGrad")
def pad_grad(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    mode = str(node.attrs.get("mode", "constant"))
    begin, end = [int(v) for v in node.attrs["begin"]], [int(v) for v in node.attrs["end"]]
    dx = dy
    for a in reversed(range(dy.ndim)):
        if begin[a] == 0 and end[a] == 0:
            continue
        n_in = dx.shape[a] - begin[a] - end[a]
        dx = _scatter(dx, a, n_in, pad_index(mode, n_in, begin[a], end[a]), None)
    return dx

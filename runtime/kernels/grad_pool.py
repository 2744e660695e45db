"""Backward kernels of pooling: MaxPoolGrad, AveragePoolGrad, GlobalAveragePoolGrad.

Node conventions (domain ``rctc``; emitted by ``rctc.passes.grad_rules.pool``):

* ``MaxPoolGrad(dy, x) -> dx``: attrs ``kernel_shape``, ``strides``, ``pads`` (explicit ONNX
  ``[begins..., ends...]``, auto_pad resolved), ``dilations``, ``ceil_mode``. The argmax of every
  window is recomputed from ``x``; on ties the first maximum in row-major kernel order gets the
  whole gradient (onnxruntime / PyTorch).
* ``AveragePoolGrad(dy) -> dx``: the same attrs plus ``count_include_pad`` and ``input_shape``.
* ``GlobalAveragePoolGrad(dy) -> dx``: attr ``input_shape``.

Scatters loop over kernel offsets only (``prod(kernel)`` strided slice-adds into a padded
buffer that also holds the ceil-mode overhang), never over pixels; no ``np.add.at``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels._im2col import pad_spatial, window_view
from rctc.runtime.kernels.registry import KernelContext, register


def _pool_attrs(attrs: dict[str, Any], k: int) -> tuple[list[int], list[int], list[int], list[int]]:
    kernel = [int(v) for v in attrs["kernel_shape"]]
    strides = [int(v) for v in attrs.get("strides", [1] * k)]
    dilations = [int(v) for v in attrs.get("dilations", [1] * k)]
    pads = [int(v) for v in attrs.get("pads", [0] * (2 * k))]
    if len(kernel) != k or len(strides) != k or len(dilations) != k or len(pads) != 2 * k:
        raise ValueError(f"pooling attributes do not match {k} spatial axes")
    return kernel, strides, dilations, pads


def _overhang(in_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
              pads: Sequence[int], outs: Sequence[int]) -> list[int]:
    """Extra end padding the last (ceil-mode) windows reach beyond input + pads."""
    k = len(kernel)
    return [max(0, (outs[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                - (int(in_spatial[i]) + pads[i] + pads[k + i])) for i in range(k)]


def _slices(off: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
            outs: Sequence[int]) -> tuple[slice, ...]:
    """Padded-buffer positions that kernel offset ``off`` of every window reads."""
    return (slice(None), slice(None)) + tuple(
        slice(o * d, o * d + (n - 1) * s + 1, s) for o, s, d, n in zip(off, strides, dilations, outs)
    )


def _unpad(acc: np.ndarray, x_shape: Sequence[int], pads: Sequence[int]) -> np.ndarray:
    k = len(x_shape) - 2
    if acc.shape == tuple(int(s) for s in x_shape):
        return acc
    inner = tuple(slice(pads[i], pads[i] + int(x_shape[2 + i])) for i in range(k))
    return np.ascontiguousarray(acc[(slice(None), slice(None)) + inner])


def _max_pool_grad_tiled(dy: np.ndarray, x: np.ndarray, kernel: Sequence[int]) -> np.ndarray:
    """Non-overlapping windows (stride == kernel, no pads, no dilation): every kernel tap is a
    disjoint strided view of ``x`` and ``dx``.

    The window maxima come from ``prod(kernel)`` vectorised maxima over the taps; then, tap by tap
    in row-major kernel order, the gradient goes where the tap equals the maximum and no earlier
    tap of that window took it (ties: the first maximum, as the general path). Each pass touches
    one output-sized slice; input rows/cols past the last window get zero gradient.
    """
    outs = dy.shape[2:]
    lead = (slice(None), slice(None))
    offsets = list(np.ndindex(*kernel))

    def tap(a: np.ndarray, off: tuple[int, ...]) -> np.ndarray:
        return a[lead + tuple(slice(o, o + (n - 1) * kk + 1, kk) for o, n, kk in zip(off, outs, kernel))]

    best = tap(x, offsets[0]).copy()
    for off in offsets[1:]:
        np.maximum(best, tap(x, off), out=best)
    tiled = all(o * kk == s for o, kk, s in zip(outs, kernel, x.shape[2:]))
    dx = np.empty(x.shape, dtype=dy.dtype) if tiled else np.zeros(x.shape, dtype=dy.dtype)
    free = np.ones(best.shape, dtype=bool)  # windows whose maximum no earlier tap has taken
    hit = np.empty(best.shape, dtype=bool)
    for i, off in enumerate(offsets):
        np.equal(tap(x, off), best, out=hit)
        hit &= free
        np.multiply(dy, hit, out=tap(dx, off))
        if i + 1 < len(offsets):
            free ^= hit  # hit is a subset of free
    return dx


def max_pool_grad(dy: np.ndarray, x: np.ndarray, kernel: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int], pads: Sequence[int]) -> np.ndarray:
    """Route each window's output gradient to the (first) argmax of that window."""
    outs = list(dy.shape[2:])
    if (list(strides) == list(kernel) and not any(pads) and all(d == 1 for d in dilations)
            and all(o * kk <= s for o, kk, s in zip(outs, kernel, x.shape[2:]))):
        return _max_pool_grad_tiled(dy, x, kernel)
    extra = _overhang(x.shape[2:], kernel, strides, dilations, pads, outs)
    low = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    xp = pad_spatial(x, pads, low, extra)
    view = window_view(xp, kernel, strides, dilations, outs)  # (N, C, *k, *out), no copy
    sel = (slice(None), slice(None))
    offsets = list(np.ndindex(*kernel))
    # argmax over kernel offsets, one vectorised pass per offset (strictly greater: ties keep
    # the first maximum)
    best = view[sel + offsets[0]].copy()
    arg = np.zeros(best.shape, dtype=np.uint8 if len(offsets) < 256 else np.int32)
    hit = np.empty(best.shape, dtype=bool)
    for i, off in enumerate(offsets[1:], start=1):
        v = view[sel + off]
        np.greater(v, best, out=hit)
        np.maximum(best, v, out=best)
        arg[hit] = i
    acc = np.zeros(xp.shape, dtype=dy.dtype)
    part = np.empty(dy.shape, dtype=dy.dtype)
    for i, off in enumerate(offsets):
        np.equal(arg, i, out=hit)
        np.multiply(dy, hit, out=part)
        acc[_slices(off, strides, dilations, outs)] += part
    return _unpad(acc, x.shape, pads)


def _tap_counts(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, out: int, lo: int,
                hi: int) -> np.ndarray:
    """Per output position along one axis: window taps inside [lo, hi) (input coordinates)."""
    pos = np.arange(out)[:, None] * stride - pad_begin + np.arange(kernel)[None, :] * dilation
    return ((pos >= lo) & (pos < hi)).sum(axis=1)


def average_pool_grad(dy: np.ndarray, x_shape: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                      dilations: Sequence[int], pads: Sequence[int], count_include_pad: bool) -> np.ndarray:
    """Spread each window's gradient / divisor over its taps (divisor as the forward AveragePool)."""
    k = len(kernel)
    outs = list(dy.shape[2:])
    counts = None
    for i in range(k):
        size = int(x_shape[2 + i])
        lo, hi = (-pads[i], size + pads[k + i]) if count_include_pad else (0, size)
        c = _tap_counts(size, kernel[i], strides[i], dilations[i], pads[i], outs[i], lo, hi)
        counts = c if counts is None else np.multiply.outer(counts, c)
    assert counts is not None
    if np.all(counts == math.prod(kernel)):
        g = dy * np.asarray(1.0 / math.prod(kernel), dtype=dy.dtype)
    else:
        g = dy / np.maximum(counts, 1).astype(dy.dtype)
    extra = _overhang(x_shape[2:], kernel, strides, dilations, pads, outs)
    padded = tuple(int(x_shape[2 + i]) + pads[i] + pads[k + i] + extra[i] for i in range(k))
    acc = np.zeros(tuple(int(s) for s in x_shape[:2]) + padded, dtype=dy.dtype)
    for off in np.ndindex(*kernel):
        acc[_slices(off, strides, dilations, outs)] += g
    return _unpad(acc, x_shape, pads)


@register("MaxPoolGrad")
def max_pool_grad_kernel(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of MaxPool w.r.t. its input X."""
    kernel, strides, dilations, pads = _pool_attrs(node.attrs, x.ndim - 2)
    return max_pool_grad(dy, x, kernel, strides, dilations, pads)


@register("AveragePoolGrad")
def average_pool_grad_kernel(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    """Gradient of AveragePool w.r.t. its input X (shape ``input_shape``)."""
    kernel, strides, dilations, pads = _pool_attrs(node.attrs, dy.ndim - 2)
    x_shape = [int(v) for v in node.attrs["input_shape"]]
    return average_pool_grad(dy, x_shape, kernel, strides, dilations, pads,
                             bool(node.attrs.get("count_include_pad", 0)))


@register("GlobalAveragePoolGrad")
def global_average_pool_grad_kernel(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    """dy / prod(spatial), broadcast over the spatial axes of ``input_shape``."""
    x_shape = tuple(int(v) for v in node.attrs["input_shape"])
    dx = np.empty(x_shape, dtype=dy.dtype)
    dx[...] = dy * np.asarray(1.0 / math.prod(x_shape[2:]), dtype=dy.dtype)
    return dx

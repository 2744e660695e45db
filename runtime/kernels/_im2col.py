"""Shared helpers for windowed ops (Conv, pooling, their gradients, integer conv).

Not a kernel module (leading underscore: ``rctc.runtime.kernels`` does not auto-import it).

Layout conventions (N-D spatial, ONNX ``NC<spatial>`` tensors):

* ``pads`` are in ONNX order ``[b_1, ..., b_k, e_1, ..., e_k]`` (all begins, then all ends).
* :func:`window_view` is a zero-copy strided view of a (padded) input with shape
  ``(N, C, *kernel, *out)`` (or ``(N, C, *out, *kernel)`` with ``kernel_last=True``).
* window sizes and explicit pads come from :mod:`rctc.ops.geometry` (shared with the passes).
* :func:`pad_spatial` is separate (and a no-op without padding) so callers that pad for other
  reasons (ceil-mode overhang, -inf for max pooling) share one padded buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from rctc.ops.geometry import window_params


def pad_spatial(
    x: np.ndarray, pads: Sequence[int], value: float | int = 0, extra_end: Sequence[int] | None = None,
    dtype: Any = None,
) -> np.ndarray:
    """Pad the spatial axes (2..) of ``x``; returns ``x`` itself when there is nothing to pad.

    ``extra_end`` adds more padding at the end of each axis (ceil-mode overhang). ``dtype``
    (default ``x.dtype``) converts in the same copy (then ``x`` is converted even without pads).
    """
    k = x.ndim - 2
    begins = [int(p) for p in pads[:k]]
    ends = [int(p) + (int(extra_end[i]) if extra_end is not None else 0) for i, p in enumerate(pads[k:])]
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    if not any(begins) and not any(ends):
        return x.astype(dtype, copy=False)
    if min(begins + ends) < 0:
        raise ValueError("negative pads are not supported")
    shape = x.shape[:2] + tuple(s + b + e for s, b, e in zip(x.shape[2:], begins, ends, strict=True))
    out = np.full(shape, value, dtype=dtype)
    inner = tuple(slice(b, b + s) for b, s in zip(begins, x.shape[2:], strict=True))
    out[(slice(None), slice(None)) + inner] = x
    return out


def window_view(
    xp: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out_spatial: Sequence[int],
    kernel_last: bool = False,
) -> np.ndarray:
    """Zero-copy read-only view of all windows of the padded input ``xp``.

    Shape ``(N, C, *kernel, *out)``, or ``(N, C, *out, *kernel)`` if ``kernel_last``.
    """
    k = xp.ndim - 2
    for i in range(k):
        last = (out_spatial[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i]
        if out_spatial[i] < 1 or kernel[i] < 1 or last >= xp.shape[2 + i]:
            raise ValueError(f"window exceeds padded input on spatial axis {i}")
    sp = xp.strides[2:]
    kstr = tuple(sp[i] * dilations[i] for i in range(k))
    ostr = tuple(sp[i] * strides[i] for i in range(k))
    if kernel_last:
        shape = xp.shape[:2] + tuple(out_spatial) + tuple(kernel)
        strides_b = xp.strides[:2] + ostr + kstr
    else:
        shape = xp.shape[:2] + tuple(kernel) + tuple(out_spatial)
        strides_b = xp.strides[:2] + kstr + ostr
    return as_strided(xp, shape=shape, strides=strides_b, writeable=False)


@dataclass(frozen=True)
class ConvGeom:
    """Window geometry of one Conv (explicit pads), derived once per node and input shape."""

    n: int
    c: int
    m: int
    group: int
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]

    @cached_property
    def kk(self) -> int:
        return math.prod(self.kernel)

    @cached_property
    def p(self) -> int:
        return math.prod(self.out_spatial)

    @property
    def depthwise(self) -> bool:
        """One input channel per group and one output channel per input channel."""
        return self.group == self.c == self.m and self.group > 1

    @cached_property
    def padded(self) -> tuple[int, ...]:
        k = len(self.kernel)
        return tuple(s + self.pads[i] + self.pads[k + i] for i, s in enumerate(self.in_spatial))

    def tap_slices(self, off: Sequence[int]) -> tuple[slice, ...]:
        """Slices (over the padded spatial axes) that kernel offset ``off`` reads for every output."""
        return tuple(
            slice(o * d, o * d + (n - 1) * s + 1, s)
            for o, s, d, n in zip(off, self.strides, self.dilations, self.out_spatial, strict=True)
        )

    def transposed(self) -> ConvGeom | None:
        return self._transposed

    @cached_property
    def _transposed(self) -> ConvGeom | None:
        """Geometry of the data gradient as a forward conv of ``dy`` (flipped, transposed weight).

        For stride 1, group 1: ``dx = conv(dy, W')`` with ``W'[c, m, k] = W[m, c, K-1-k]`` and
        pads ``(k-1)*d - p``; None where that does not apply (strides, groups, pads > (k-1)*d).
        """
        k = len(self.kernel)
        if self.group != 1 or any(s != 1 for s in self.strides):
            return None
        pads = tuple((self.kernel[i % k] - 1) * self.dilations[i % k] - p for i, p in enumerate(self.pads))
        if min(pads) < 0:
            return None
        return ConvGeom(self.n, self.m, self.c, 1, self.kernel, self.strides, self.dilations, pads,
                        self.out_spatial, self.in_spatial)

    @cached_property
    def depthwise_transposed(self) -> ConvGeom | None:
        """The data gradient of a stride-1 depthwise conv as a depthwise conv of dy (flipped taps)."""
        k = len(self.kernel)
        pads = tuple((self.kernel[i % k] - 1) * self.dilations[i % k] - p for i, p in enumerate(self.pads))
        if any(s != 1 for s in self.strides) or min(pads) < 0:
            return None
        return ConvGeom(self.n, self.c, self.m, self.group, self.kernel, self.strides, self.dilations, pads,
                        self.out_spatial, self.in_spatial)

    def flat_taps(self) -> tuple[list[int], int] | None:
        """See :attr:`_flat` (computed once per geometry)."""
        return self._flat

    @cached_property
    def _flat(self) -> tuple[list[int], int] | None:
        """Stride-1 convs on the flattened padded grid: (flat offset of each kernel tap, length L).

        With all strides 1, output ``o`` reads padded input ``o + off*d`` on every axis, i.e. flat
        index ``q(o) + flat(off*d)`` where ``q`` is the flat index in the padded grid. So a tap is
        ONE contiguous slice ``x_flat[..., off:off+L]`` of the padded input (long inner loops
        instead of one per output row); outputs live at ``q(o)`` of a ``(out_0, *padded[1:])`` grid
        and ``L = q(last output) + 1``. None for strides > 1.
        """
        if any(s != 1 for s in self.strides):
            return None
        padded = self.padded
        ps = [math.prod(padded[i + 1:]) for i in range(len(padded))]
        offs = [sum(o * d * p for o, d, p in zip(off, self.dilations, ps)) for off in np.ndindex(*self.kernel)]
        last = sum((o - 1) * p for o, p in zip(self.out_spatial, ps))
        return offs, last + 1

    def flat_out_grid(self) -> tuple[int, ...]:
        """Shape ``(out_0, *padded[1:])`` of the grid the :meth:`flat_taps` outputs live on."""
        return (self.out_spatial[0],) + self.padded[1:]

    @cached_property
    def grid(self) -> tuple[int, ...]:
        """Per-sample spatial shape of the GEMM columns (:func:`cols_channel_major`).

        Stride 1: the flat-tap grid ``(out_0, *padded[1:])`` (outputs at its leading corner, the
        rest cropped); otherwise the output shape itself.
        """
        return self.flat_out_grid() if self.flat_taps() is not None else self.out_spatial

    def inner(self) -> tuple[slice, ...]:
        """Slices of the un-padded input inside the padded spatial axes."""
        return tuple(slice(p, p + s) for p, s in zip(self.pads, self.in_spatial))


def geom_from_attrs(x_shape: Sequence[int], m: int, attrs: dict[str, Any], kernel: Sequence[int]) -> ConvGeom:
    """:class:`ConvGeom` of a Conv node (``auto_pad`` resolved) for input shape ``x_shape``."""
    strides, dilations, pads, outs = window_params(attrs, x_shape, kernel)
    return ConvGeom(int(x_shape[0]), int(x_shape[1]), int(m), int(attrs.get("group", 1)), tuple(kernel),
                    tuple(strides), tuple(dilations), tuple(pads), tuple(int(s) for s in x_shape[2:]), tuple(outs))


_PLANS: dict[int, tuple[Any, Any, Any]] = {}


def cached_plan(node: Any, key: Any, build: Any) -> Any:
    """Per-node memo of ``build()`` (attribute parsing, geometry), valid while ``key`` (shapes) holds.

    Keyed by the node object (its id, with the node kept alive so the id is never reused).
    """
    ent = _PLANS.get(id(node))
    if ent is not None and ent[0] is node and ent[1] == key:
        return ent[2]
    plan = build()
    _PLANS[id(node)] = (node, key, plan)
    return plan


def to_channel_major(x: np.ndarray, dtype: Any, pads: Sequence[int] | None = None) -> np.ndarray:
    """``(N, C, *s)`` -> ``(C, N, *padded s)`` in ``dtype`` (zero padding), one copy."""
    n, c = x.shape[:2]
    k = x.ndim - 2
    if pads is None or not any(pads):
        out = np.empty((c, n) + x.shape[2:], dtype=dtype)
        out[...] = x.swapaxes(0, 1)
        return out
    shape = (c, n) + tuple(s + pads[i] + pads[k + i] for i, s in enumerate(x.shape[2:]))
    out = np.zeros(shape, dtype=dtype)
    inner = tuple(slice(pads[i], pads[i] + s) for i, s in enumerate(x.shape[2:]))
    out[(slice(None), slice(None)) + inner] = x.swapaxes(0, 1)
    return out


def from_channel_major(y: np.ndarray, n: int, spatial: Sequence[int], dtype: Any,
                       grid: Sequence[int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``(M, N*Q)`` -> ``(N, M, *spatial)`` in ``dtype``, one copy (into ``out`` when given).

    ``grid`` (default ``spatial``) is the per-sample shape of the columns; the outputs are its
    leading corner ``[:spatial_0, :spatial_1, ...]`` (flat-tap grids, :attr:`ConvGeom.grid`).
    """
    m = y.shape[0]
    grid = tuple(spatial) if grid is None else tuple(grid)
    v = y.reshape((m, n) + grid)
    if grid != tuple(spatial):
        v = v[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]
    if out is None:
        out = np.empty((n, m) + tuple(spatial), dtype=dtype)
    out[...] = v.swapaxes(0, 1)
    return out


def to_grid(dy: np.ndarray, g: ConvGeom, dtype: Any) -> np.ndarray:
    """``dy (N, M, *out)`` -> ``(M, N*Q)`` on the column grid :attr:`ConvGeom.grid` (zeros off the
    outputs), in ``dtype``: the GEMM partner of :func:`cols_channel_major` for the weight gradient."""
    grid = g.grid
    if grid == g.out_spatial:
        return to_channel_major(dy, dtype).reshape(dy.shape[1], -1)
    out = np.zeros((dy.shape[1], dy.shape[0]) + grid, dtype=dtype)
    out[(slice(None), slice(None)) + tuple(slice(0, s) for s in g.out_spatial)] = dy.swapaxes(0, 1)
    return out.reshape(dy.shape[1], -1)


def cols_channel_major(x: np.ndarray, g: ConvGeom, dtype: Any) -> np.ndarray:
    """Conv columns ``(C*prod(kernel), N*Q)`` of ``x`` (N, C, *in) in ``dtype``, Q = prod(g.grid).

    Row index ``c*prod(kernel) + kernel offset`` (matches ``W.reshape(M, -1)``). Stride 1: each
    kernel tap is one contiguous slice per (channel, sample) of the flattened padded input, on
    the grid :attr:`ConvGeom.grid` (a few cropped columns more, far fewer and longer copies); the
    columns past the last output are zero, the others off the outputs hold finite input values.
    A 1x1 stride-1 conv needs only the channel-major copy itself.
    """
    xt = to_channel_major(x, dtype, g.pads)  # (C, N, *padded)
    flat = g.flat_taps()
    if flat is not None:
        offs, length = flat
        q = math.prod(g.grid)
        if g.kk == 1 and q == math.prod(g.padded):
            return xt.reshape(g.c, -1)
        xf = xt.reshape(g.c, g.n, -1)
        cols = np.empty((g.c, g.kk, g.n, q), dtype=dtype)
        for i, off in enumerate(offs):
            cols[:, i, :, :length] = xf[:, :, off:off + length]
        if q > length:
            cols[:, :, :, length:] = 0
        return cols.reshape(g.c * g.kk, -1)
    cols = np.empty((g.c,) + g.kernel + (g.n,) + g.out_spatial, dtype=dtype)
    lead = (slice(None), slice(None))
    for off in np.ndindex(*g.kernel):
        cols[(slice(None),) + off] = xt[lead + g.tap_slices(off)]
    return cols.reshape(g.c * g.kk, -1)


def col2im_channel_major(cols: np.ndarray, g: ConvGeom, out_dtype: Any, acc_dtype: Any = None) -> np.ndarray:
    """Adjoint of :func:`cols_channel_major`: ``(C*prod(kernel), N*P)`` -> ``(N, C, *in)`` in ``out_dtype``.

    Sums in ``acc_dtype`` (default ``cols.dtype``) with ``prod(kernel)`` strided slice-adds into a
    channel-major padded buffer; the final transpose back to NC order also converts the dtype.
    """
    acc_dtype = np.dtype(acc_dtype or cols.dtype)
    cv = cols.reshape((g.c,) + g.kernel + (g.n,) + g.out_spatial)
    if g.kk == 1 and all(s == 1 for s in g.strides) and not any(g.pads):
        return from_channel_major(cv.reshape(g.c, -1), g.n, g.in_spatial, out_dtype)
    acc = np.zeros((g.c, g.n) + g.padded, dtype=acc_dtype)
    lead = (slice(None), slice(None))
    for off in np.ndindex(*g.kernel):
        acc[lead + g.tap_slices(off)] += cv[(slice(None),) + off]
    out = np.empty((g.n, g.c) + g.in_spatial, dtype=out_dtype)
    out[...] = acc[lead + g.inner()].swapaxes(0, 1)
    return out

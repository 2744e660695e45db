"""Stride-1, group-1 convolutions as one GEMM per kernel tap, read straight off the padded input.

Not a kernel module (leading underscore: ``rctc.runtime.kernels`` does not auto-import it).

With all strides 1, kernel tap ``t`` of every output reads the flattened channel-major padded
input ``xf (C, N*Q)`` (``Q = prod(padded)``) at one fixed offset ``off_t``: the tap's operand is
the view ``xf[:, off_t:off_t+L]`` (:meth:`ConvGeom.flat_taps`, here over the whole batch), and
output ``o`` of sample ``n`` sits at column ``n*Q + q(o)`` of the same grid. So the conv is
``Y (M, N*Q) = sum_t W_t (M, C) @ xf[:, off_t:off_t+L]``, the sum accumulated inside BLAS
(:func:`rctc.runtime.blas.gemm`), with no im2col columns (``prod(kernel)`` times the input). The
data gradient of such a conv is one too (a conv of ``dy`` with the flipped kernel). The weight
gradient keeps its im2col GEMM: one GEMM per weight tap has a tiny ``(M, C)`` output and a huge
contraction, and measured slower than one GEMM against the columns.

Columns off the outputs hold values of no meaning and are cropped by the caller
(:func:`~rctc.runtime.kernels._im2col.from_channel_major` with ``grid=g.padded``).

Integer operands (held exactly in float32/float64) stay exact by the argument of
:func:`rctc.runtime.intmath.int_matmul`: every intermediate value BLAS forms is a subset sum of
the products it has been given since the output was last zeroed, so the sum is cut into pieces
whose worst case is exactly representable (2^24 in float32, 2^53 in float64), and the pieces
are added in float64: groups of taps (``taps * C * max|w| * max|x|`` within that limit). The
caller guarantees the whole sum ``kk * C * max|w| * max|x| <= 2^53``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rctc.runtime.blas import blas_threads_for, gemm
from rctc.runtime.intmath import F32_EXACT, F64_EXACT
from rctc.runtime.kernels._im2col import ConvGeom, to_channel_major


def applicable(g: ConvGeom | None) -> bool:
    """True for the convs this module runs: stride 1, one group, a kernel of more than one tap."""
    return g is not None and g.group == 1 and g.kk > 1 and g.flat_taps() is not None


def tap_weights(w: np.ndarray, dtype: Any, flip: bool = False) -> np.ndarray:
    """Per-tap weight matrices, contiguous: ``(kk, M, C)`` with ``[t] = W[:, :, t]``.

    ``flip``: the data gradient's weights ``(kk, C, M)`` with ``[t] = W[:, :, kk-1-t]^T`` (the
    kernel reversed on every axis: the flat tap index reversed, :meth:`ConvGeom.transposed`).
    """
    m, c = w.shape[:2]
    wt = w.reshape(m, c, -1)
    wt = wt[:, :, ::-1].transpose(2, 1, 0) if flip else wt.transpose(2, 0, 1)
    return np.ascontiguousarray(wt, dtype=dtype)


def taps_per_group(c: int, product_bound: int, dtype: Any) -> int:
    """How many taps (``c`` products each, every one at most ``product_bound``) one float sum of
    ``dtype`` holds exactly; 0 if not even one tap fits."""
    limit = F32_EXACT if np.dtype(dtype) == np.float32 else F64_EXACT
    return limit // max(product_bound, 1) // c


def conv(x: np.ndarray, wt: np.ndarray, g: ConvGeom, dtype: Any, group_taps: int | None = None) -> np.ndarray:
    """``(M, N*Q)`` conv of ``x (N, C, *in)`` with tap weights ``wt (kk, M, C)`` on the padded grid.

    ``group_taps`` (integer data): taps summed in ``dtype`` before the group's result is added
    into a float64 total (returned in float64 then; exact only if the whole sum is bounded by
    2^53, which the caller checks); None: one sum over all taps in ``dtype``.
    """
    offs, length = g.flat_taps()  # type: ignore[misc]
    q = math.prod(g.padded)
    total = (g.n - 1) * q + length
    xf = to_channel_major(x, dtype, g.pads).reshape(g.c, -1)
    m = wt.shape[1]
    kk = len(offs)
    with blas_threads_for(m * g.c * total * kk):
        if group_taps is None or group_taps >= kk:
            y = np.empty((m, g.n * q), dtype=dtype)
            yv = y[:, :total]
            for i, off in enumerate(offs):
                gemm(wt[i], xf[:, off:off + total], yv, accumulate=i > 0)
            return y
        acc = np.zeros((m, g.n * q), dtype=np.float64)
        part = np.empty((m, total), dtype=dtype)
        for start in range(0, kk, group_taps):
            for i in range(start, min(start + group_taps, kk)):
                gemm(wt[i], xf[:, offs[i]:offs[i] + total], part, accumulate=i > start)
            acc[:, :total] += part
        return acc

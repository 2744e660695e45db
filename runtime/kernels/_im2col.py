"""Shared helpers for windowed ops (Conv, pooling, their gradients, integer conv).

Not a kernel module (leading underscore: ``rctc.runtime.kernels`` does not auto-import it).

Layout conventions (N-D spatial, ONNX ``NC<spatial>`` tensors):

* ``pads`` are in ONNX order ``[b_1, ..., b_k, e_1, ..., e_k]`` (all begins, then all ends).
* :func:`window_view` is a zero-copy strided view of a (padded) input with shape
  ``(N, C, *kernel, *out)`` (or ``(N, C, *out, *kernel)`` with ``kernel_last=True``).
* :func:`im2col` materialises that view as ``(N, C*prod(kernel), prod(out))`` with exactly one
  copy; a Conv is then ``W.reshape(M, -1) @ cols`` (one batched BLAS matmul) and the result is
  already in ``(N, M, prod(out))`` = NCHW order.
* :func:`pad_spatial` is separate (and a no-op without padding) so callers that pad for other
  reasons (ceil-mode overhang, -inf for max pooling) share one padded buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _as_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def out_size(
    in_size: int,
    kernel: int,
    stride: int,
    dilation: int,
    pad_begin: int,
    pad_end: int,
    ceil_mode: bool = False,
) -> int:
    """Output length of one spatial axis (ONNX/PyTorch rule, incl. pooling ``ceil_mode``).

    With ``ceil_mode`` the last window must start inside the input or the begin padding
    (a window that would start in the end padding only is dropped), as in onnxruntime/PyTorch.
    """
    eff = (kernel - 1) * dilation + 1
    span = in_size + pad_begin + pad_end - eff
    if span < 0:
        raise ValueError(f"kernel extent {eff} larger than padded input {in_size + pad_begin + pad_end}")
    if not ceil_mode:
        return span // stride + 1
    n = -(-span // stride) + 1
    if (n - 1) * stride >= in_size + pad_begin:
        n -= 1
    return n


def resolve_pads(
    auto_pad: Any,
    in_spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int] | None,
) -> list[int]:
    """Explicit ONNX pads ``[begins..., ends...]`` for an ``auto_pad`` setting."""
    k = len(in_spatial)
    mode = _as_str(auto_pad or "NOTSET")
    if mode not in AUTO_PADS:
        raise ValueError(f"unknown auto_pad {mode!r}")
    if mode == "NOTSET":
        p = [int(v) for v in pads] if pads is not None else [0] * (2 * k)
        if len(p) != 2 * k:
            raise ValueError(f"pads has {len(p)} entries, expected {2 * k}")
        return p
    if mode == "VALID":
        return [0] * (2 * k)
    begins, ends = [], []
    for i in range(k):
        out = -(-in_spatial[i] // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_spatial[i])
        small, big = total // 2, total - total // 2
        # SAME_UPPER puts the extra pad at the end, SAME_LOWER at the beginning.
        begins.append(small if mode == "SAME_UPPER" else big)
        ends.append(big if mode == "SAME_UPPER" else small)
    return begins + ends


def window_params(
    node_attrs: dict[str, Any], x_shape: Sequence[int], kernel: Sequence[int], ceil_mode: bool = False
) -> tuple[list[int], list[int], list[int], list[int]]:
    """(strides, dilations, pads, out_spatial) from ONNX Conv/Pool attributes."""
    k = len(x_shape) - 2
    strides = [int(v) for v in node_attrs.get("strides", [1] * k)]
    dilations = [int(v) for v in node_attrs.get("dilations", [1] * k)]
    pads = resolve_pads(node_attrs.get("auto_pad", "NOTSET"), x_shape[2:], kernel, strides, dilations,
                        node_attrs.get("pads"))
    outs = [
        out_size(x_shape[2 + i], kernel[i], strides[i], dilations[i], pads[i], pads[k + i], ceil_mode)
        for i in range(k)
    ]
    return strides, dilations, pads, outs


def pad_spatial(
    x: np.ndarray, pads: Sequence[int], value: float | int = 0, extra_end: Sequence[int] | None = None
) -> np.ndarray:
    """Pad the spatial axes (2..) of ``x``; returns ``x`` itself when there is nothing to pad.

    ``extra_end`` adds more padding at the end of each axis (ceil-mode overhang).
    """
    k = x.ndim - 2
    begins = [int(p) for p in pads[:k]]
    ends = [int(p) + (int(extra_end[i]) if extra_end is not None else 0) for i, p in enumerate(pads[k:])]
    if not any(begins) and not any(ends):
        return x
    if min(begins + ends) < 0:
        raise ValueError("negative pads are not supported")
    shape = x.shape[:2] + tuple(s + b + e for s, b, e in zip(x.shape[2:], begins, ends, strict=True))
    out = np.full(shape, value, dtype=x.dtype)
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


def im2col(
    xp: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out_spatial: Sequence[int],
) -> np.ndarray:
    """Columns ``(N, C*prod(kernel), prod(out))`` of the padded input, made with at most one copy.

    When the windows tile the input exactly (1x1 kernel, stride 1) the result is a read-only view.

    Row index is ``c*prod(kernel) + flat kernel offset`` (matches ``W.reshape(M, -1)``), so with
    groups the array reshapes for free to ``(N, G, C/G*prod(kernel), P)``.
    """
    n, c = xp.shape[:2]
    view = window_view(xp, kernel, strides, dilations, out_spatial)
    return view.reshape(n, c * math.prod(kernel), math.prod(out_spatial))  # copies only if it must


def col2im(
    cols: np.ndarray,
    x_shape: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int],
    out_spatial: Sequence[int],
) -> np.ndarray:
    """Adjoint of ``pad_spatial`` + :func:`im2col`: scatter-add columns back to an input-shaped array.

    Loops over kernel offsets only (prod(kernel) vectorised adds), never over pixels.
    """
    k = len(x_shape) - 2
    n, c = int(x_shape[0]), int(x_shape[1])
    padded = tuple(int(x_shape[2 + i]) + int(pads[i]) + int(pads[k + i]) for i in range(k))
    acc = np.zeros((n, c) + padded, dtype=cols.dtype)
    cv = cols.reshape((n, c) + tuple(kernel) + tuple(out_spatial))
    for off in np.ndindex(*kernel):
        starts = [off[i] * dilations[i] for i in range(k)]
        sl = tuple(
            slice(s, s + (o - 1) * st + 1, st) for s, o, st in zip(starts, out_spatial, strides, strict=True)
        )
        acc[(slice(None), slice(None)) + sl] += cv[(slice(None), slice(None)) + off]
    inner = tuple(slice(int(pads[i]), int(pads[i]) + int(x_shape[2 + i])) for i in range(k))
    return acc[(slice(None), slice(None)) + inner]

"""Backward kernels of Conv: ConvGradInput (data gradient), ConvGradWeight, ConvGradBias.

Node conventions (domain ``rctc``; emitted by ``rctc.passes.grad_rules.linear``):

* ``ConvGradInput(dy, w) -> dx``: attrs ``kernel_shape``, ``strides``, ``pads`` (explicit ONNX
  ``[begins..., ends...]``, auto_pad already resolved), ``dilations``, ``group``, ``input_shape``.
* ``ConvGradWeight(dy, x) -> dw``: the same window attrs plus ``weight_shape``.
* ``ConvGradBias(dy) -> db``: sum of ``dy`` over batch and spatial axes.

Both products are one BLAS matmul over the whole batch (``N*P`` folded into one GEMM
dimension); grouped convolutions add a group batch axis to that matmul, never a Python loop
over groups. The data gradient scatters its columns back with ``prod(kernel)`` strided
slice-adds into a padded buffer (no ``np.add.at``, no loop over pixels); input rows no window
reaches (stride > 1 with odd sizes) keep a zero gradient. Float32 stays float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels._im2col import pad_spatial, window_view
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


def _dy_by_channel(dy: np.ndarray) -> np.ndarray:
    """``(N, M, *out)`` -> ``(M, N*P)`` (one copy), the GEMM operand of both products."""
    n, m = dy.shape[:2]
    return np.ascontiguousarray(dy.reshape(n, m, -1).transpose(1, 0, 2)).reshape(m, -1)


def conv_grad_weight(
    dy: np.ndarray, x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
    pads: Sequence[int], group: int, matmul: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.matmul,
) -> np.ndarray:
    """dW[m, c, *k] = sum_{n, p} dy[n, m, p] * window(x)[n, c, *k, p] as one (grouped) matmul."""
    if x.dtype != dy.dtype and dy.dtype.kind == "f":
        x = x.astype(dy.dtype)
    n, c = x.shape[:2]
    m = dy.shape[1]
    outs = list(dy.shape[2:])
    kk = math.prod(kernel)
    xp = pad_spatial(x, pads)
    view = window_view(xp, kernel, strides, dilations, outs)  # (N, C, *k, *out), no copy
    # columns laid out (C*K, N*P): the contraction axis N*P is contiguous for BLAS. Copied one
    # kernel offset at a time (several times faster than one copy of the 2k+2-D strided view).
    cols = np.empty((c,) + tuple(kernel) + (n,) + tuple(outs), dtype=x.dtype)
    for off in np.ndindex(*kernel):
        cols[(slice(None),) + off] = view[(slice(None), slice(None)) + off].swapaxes(0, 1)
    cols = cols.reshape(c * kk, -1)
    dy2 = _dy_by_channel(dy)  # (M, N*P)
    if group == 1:
        dw = matmul(dy2, cols.T)
    else:
        cg = c // group
        dw = matmul(dy2.reshape(group, m // group, -1), cols.reshape(group, cg * kk, -1).transpose(0, 2, 1))
    return dw.reshape((m, c // group) + tuple(kernel))


def conv_grad_input(
    dy: np.ndarray, w: np.ndarray, x_shape: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
    dilations: Sequence[int], pads: Sequence[int], group: int,
    matmul: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.matmul,
) -> np.ndarray:
    """dx = col2im(W^T @ dy): one (grouped) matmul, then prod(kernel) strided slice-adds."""
    if w.dtype != dy.dtype and dy.dtype.kind == "f":
        w = w.astype(dy.dtype)
    n, c = int(x_shape[0]), int(x_shape[1])
    m = dy.shape[1]
    outs = list(dy.shape[2:])
    k = len(kernel)
    kk = math.prod(kernel)
    dy2 = _dy_by_channel(dy)  # (M, N*P)
    if group == 1:
        cols = matmul(w.reshape(m, -1).T, dy2)  # (C*K, N*P)
    else:
        mg, kg = m // group, (c // group) * kk
        cols = matmul(w.reshape(group, mg, kg).transpose(0, 2, 1), dy2.reshape(group, mg, -1))  # (G, Kg, N*P)
    cv = cols.reshape((c,) + tuple(kernel) + (n,) + tuple(outs))
    padded = tuple(int(x_shape[2 + i]) + pads[i] + pads[k + i] for i in range(k))
    acc = np.zeros((c, n) + padded, dtype=cols.dtype)  # same (C, N) order as the columns
    for off in np.ndindex(*kernel):
        sl = tuple(
            slice(off[i] * dilations[i], off[i] * dilations[i] + (outs[i] - 1) * strides[i] + 1, strides[i])
            for i in range(k)
        )
        acc[(slice(None), slice(None)) + sl] += cv[(slice(None),) + off]
    inner = tuple(slice(pads[i], pads[i] + int(x_shape[2 + i])) for i in range(k))
    dx = np.empty((n, c) + tuple(int(s) for s in x_shape[2:]), dtype=acc.dtype)
    dx[...] = acc[(slice(None), slice(None)) + inner].swapaxes(0, 1)
    return dx


@register("ConvGradInput")
def conv_grad_input_kernel(ctx: KernelContext, node: Node, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Gradient of Conv w.r.t. its input X (shape ``input_shape``)."""
    x_shape = [int(v) for v in node.attrs["input_shape"]]
    kernel, strides, dilations, pads, group = _window_attrs(node.attrs, dy.ndim - 2)
    return conv_grad_input(dy, w, x_shape, kernel, strides, dilations, pads, group)


@register("ConvGradWeight")
def conv_grad_weight_kernel(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of Conv w.r.t. its weight W (shape ``weight_shape``)."""
    kernel, strides, dilations, pads, group = _window_attrs(node.attrs, dy.ndim - 2)
    dw = conv_grad_weight(dy, x, kernel, strides, dilations, pads, group)
    want = tuple(int(v) for v in node.attrs.get("weight_shape", dw.shape))
    if dw.shape != want:
        raise ValueError(f"ConvGradWeight produced {dw.shape}, weight_shape is {want}")
    return dw


@register("ConvGradBias")
def conv_grad_bias_kernel(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    """Gradient of Conv w.r.t. its bias: sum of dy over batch and spatial axes."""
    return dy.sum(axis=(0,) + tuple(range(2, dy.ndim)), dtype=dy.dtype)

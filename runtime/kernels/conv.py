"""Conv forward kernel: pad + im2col (numpy stride tricks, one copy) + one batched BLAS matmul.

Supports 1-D/2-D/3-D spatial inputs, explicit pads and ``auto_pad`` (SAME_UPPER, SAME_LOWER,
VALID, NOTSET), strides, dilations, groups (incl. depthwise) and an optional bias. Grouped
convolutions use one matmul over a group axis (``(G, M/G, K) @ (N, G, K, P)``), never a
Python loop over groups or pixels.
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels._im2col import im2col, pad_spatial, window_params
from rctc.runtime.kernels.registry import KernelContext, register


def conv_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    attrs: dict,
) -> np.ndarray:
    """ONNX Conv on numpy arrays (``attrs`` as in ``node.attrs``); reused by other kernels."""
    if x.ndim < 3:
        raise ValueError(f"Conv input must be N x C x spatial..., got shape {x.shape}")
    n, c = x.shape[:2]
    m = w.shape[0]
    group = int(attrs.get("group", 1))
    kernel = [int(v) for v in attrs.get("kernel_shape", w.shape[2:])]
    if list(w.shape[2:]) != kernel:
        raise ValueError(f"kernel_shape {kernel} does not match weight shape {w.shape}")
    if c % group or m % group or w.shape[1] != c // group:
        raise ValueError(f"channels {c} / weight {w.shape} inconsistent with group={group}")
    if w.dtype != x.dtype:
        w = w.astype(x.dtype)
    strides, dilations, pads, outs = window_params(attrs, x.shape, kernel)
    xp = pad_spatial(x, pads)
    cols = im2col(xp, kernel, strides, dilations, outs)  # (N, C*K, P)
    p = cols.shape[-1]
    if group == 1:
        y = np.matmul(w.reshape(m, -1), cols)  # (N, M, P)
    else:
        kg = (c // group) * math.prod(kernel)
        y = np.matmul(w.reshape(group, m // group, kg), cols.reshape(n, group, kg, p))  # (N, G, M/G, P)
    y = y.reshape((n, m) + tuple(outs))
    if b is not None:
        y += b.astype(y.dtype, copy=False).reshape((1, m) + (1,) * len(outs))
    return y


@register("Conv")
def conv(
    ctx: KernelContext, node: Node, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None
) -> np.ndarray:
    """ONNX Conv (opset 1-22 forms)."""
    return conv_forward(x, w, b, node.attrs)

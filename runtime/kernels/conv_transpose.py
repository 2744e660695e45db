"""Kernels of ConvTranspose and its gradients (definition: rctc/ops/products.py).

A transposed convolution is Conv's data gradient, so the kernels reuse Conv's numpy products:

* ``ConvTranspose(x, W, B?)``: x (N, C, in...), W (C, M/g, k...) -> y (N, M, out...), the
  data-gradient product of a Conv whose input is y and whose weight is W (geometry and explicit
  pads from :func:`rctc.ops.geometry.conv_transpose_params`), plus the bias per channel.
* ``ConvTransposeGradInput(dY, W)``: dX = Conv(dY, W) with the same window (no bias).
* ``ConvTransposeGradWeight(dY, X)``: Conv's weight gradient with X as the output gradient and
  dY as the input: shape W (C, M/g, k...).

Float dtypes are kept; nothing writes into its inputs.
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.ops.geometry import conv_transpose_params
from rctc.runtime.kernels._im2col import cached_plan
from rctc.runtime.kernels.conv import conv_forward
from rctc.runtime.kernels.grad_linear import _grad_input, _grad_weight, grad_geom
from rctc.runtime.kernels.registry import KernelContext, register


def conv_transpose_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict) -> np.ndarray:
    """ONNX ConvTranspose on float arrays (``attrs`` as in ``node.attrs``)."""
    kernel, strides, dilations, pads, outs = conv_transpose_params(attrs, x.shape, w.shape)
    group = int(attrs.get("group", 1))
    if x.shape[1] != w.shape[0] or x.shape[1] % group:
        raise ValueError(f"ConvTranspose input channels {x.shape[1]} / weight {w.shape} inconsistent with "
                         f"group={group}")
    m = w.shape[1] * group
    win = {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dilations, "group": group}
    g = grad_geom(win, (x.shape[0], m, *outs), x.shape)
    y = _grad_input(x, w, g)
    if b is not None:
        y = y + b.astype(y.dtype, copy=False).reshape((1, m) + (1,) * len(outs))
    return y.astype(x.dtype, copy=False)


@register("ConvTranspose")
def conv_transpose(ctx: KernelContext, node: Node, x: np.ndarray, w: np.ndarray,
                   b: np.ndarray | None = None) -> np.ndarray:
    return conv_transpose_forward(x, w, b, node.attrs)


@register("ConvTransposeGradInput")
def conv_transpose_grad_input(ctx: KernelContext, node: Node, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    return conv_forward(dy, w, None, dict(node.attrs))


@register("ConvTransposeGradWeight")
def conv_transpose_grad_weight(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    g = cached_plan(node, (dy.shape, x.shape), lambda: grad_geom(node.attrs, dy.shape, x.shape))
    return _grad_weight(x, dy, g).astype(dy.dtype, copy=False)

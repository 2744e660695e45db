"""Kernels of PRelu and its gradients (definition: rctc/ops/activations.py).

``PRelu(x, slope)``: ``x`` where ``x >= 0``, else ``slope * x`` (ONNX; ``slope`` broadcasts to
``x``). ``PReluGrad(dy, x, slope)``: ``dy`` where ``x > 0``, else ``slope * dy`` (PyTorch's
choice at 0). ``PReluSlopeGrad(dy, x)``: ``x * dy`` where ``x <= 0``, else 0, at the output's
shape. Outputs keep ``x``'s dtype.
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register


@register("PRelu")
def prelu(ctx: KernelContext, node: Node, x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    s = slope.astype(x.dtype, copy=False)
    return np.where(x < 0, x * s, x).astype(x.dtype, copy=False)


@register("PReluGrad")
def prelu_grad(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    s = slope.astype(dy.dtype, copy=False)
    return np.broadcast_to(np.where(x > 0, dy, dy * s), x.shape).astype(dy.dtype, copy=False)


@register("PReluSlopeGrad")
def prelu_slope_grad(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, dy.dtype.type(0), x.astype(dy.dtype, copy=False) * dy)

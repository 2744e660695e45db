"""Kernels of InstanceNormalization and its gradient (definition: rctc/ops/normalisation.py).

``InstanceNormalization(x, scale, B)``: x (N, C, spatial...) normalised per (sample, channel)
over the spatial axes with the biased variance, then ``scale[c] * xhat + B[c]`` (ONNX). The
statistics are computed in float64 for float32 inputs and the result cast back.
``InstanceNormGrad(dy, x, scale) -> (dx, dscale, dB)`` recomputes them:
``dx = (g - mean(g) - xhat * mean(g * xhat)) / sigma`` with ``g = dy * scale``,
``dscale = sum(dy * xhat)`` and ``dB = sum(dy)`` over batch and spatial axes.
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register


def _stats(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(xhat, 1 / sigma) over the spatial axes, in float64, sigma shaped (N, C, 1...)."""
    axes = tuple(range(2, x.ndim))
    x64 = x.astype(np.float64, copy=False)
    mean = x64.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(((x64 - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    return (x64 - mean) * inv, inv


def _chan(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.astype(np.float64, copy=False).reshape((1, -1) + (1,) * (ndim - 2))


@register("InstanceNormalization")
def instance_norm(ctx: KernelContext, node: Node, x: np.ndarray, scale: np.ndarray, b: np.ndarray) -> np.ndarray:
    if x.ndim < 3:
        raise ValueError(f"InstanceNormalization needs N x C x spatial..., got shape {x.shape}")
    xhat, _ = _stats(x, float(node.attrs.get("epsilon", 1e-5)))
    return (xhat * _chan(scale, x.ndim) + _chan(b, x.ndim)).astype(x.dtype)


@register("InstanceNormGrad")
def instance_norm_grad(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray,
                       scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = tuple(range(2, x.ndim))
    xhat, inv = _stats(x, float(node.attrs.get("epsilon", 1e-5)))
    d64 = dy.astype(np.float64, copy=False)
    g = d64 * _chan(scale, x.ndim)
    dx = (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True)) * inv
    red = (0,) + axes
    return (dx.astype(dy.dtype), (d64 * xhat).sum(axis=red).astype(dy.dtype), d64.sum(axis=red).astype(dy.dtype))

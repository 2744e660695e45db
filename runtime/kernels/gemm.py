"""Gemm and MatMul forward kernels (one BLAS call each; float32 stays float32)."""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register


@register("Gemm")
def gemm(
    ctx: KernelContext, node: Node, a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None
) -> np.ndarray:
    """Y = alpha * A' @ B' + beta * C, with A' = A^T if transA, B' = B^T if transB; C broadcasts."""
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"Gemm needs 2-D A and B, got {a.shape} and {b.shape}")
    a2 = a.T if int(node.attrs.get("transA", 0)) else a
    b2 = b.T if int(node.attrs.get("transB", 0)) else b
    y = np.matmul(a2, b2)
    if alpha != 1.0:
        if np.issubdtype(y.dtype, np.floating):
            y *= np.asarray(alpha, dtype=y.dtype)
        else:
            y = (y * alpha).astype(y.dtype)
    if c is not None and beta != 0.0:
        if beta == 1.0:
            cc = c
        elif np.issubdtype(c.dtype, np.floating):
            cc = c * np.asarray(beta, dtype=c.dtype)
        else:
            cc = (c * beta).astype(c.dtype)
        if np.broadcast_shapes(y.shape, cc.shape) != y.shape:
            raise ValueError(f"Gemm C of shape {c.shape} does not broadcast to {y.shape}")
        y += cc.astype(y.dtype, copy=False)
    return y


@register("MatMul")
def matmul(ctx: KernelContext, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy.matmul semantics (= ONNX MatMul): 1-D operands promoted/removed, batch dims broadcast."""
    return np.matmul(a, b)

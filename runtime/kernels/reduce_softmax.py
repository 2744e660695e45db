"""Reductions and softmax-family forward kernels: ReduceMean, ReduceSum, Softmax, LogSoftmax, ArgMax."""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register


def _reduce_axes(node: Node, x: np.ndarray, axes_in: np.ndarray | None) -> tuple[int, ...] | None:
    """Axes from the optional 2nd input (ReduceSum opset >= 13, ReduceMean >= 18) or the ``axes``
    attribute (older opsets). ``None`` means "no-op" (empty axes with noop_with_empty_axes=1)."""
    if axes_in is not None:
        axes = [int(a) for a in np.asarray(axes_in).reshape(-1)]
    else:
        axes = [int(a) for a in node.attrs.get("axes", [])]
    if not axes:
        if int(node.attrs.get("noop_with_empty_axes", 0)):
            return None
        return tuple(range(x.ndim))
    norm = tuple(sorted({a + x.ndim if a < 0 else a for a in axes}))
    if norm and (norm[0] < 0 or norm[-1] >= x.ndim):
        raise ValueError(f"reduce axes {axes} out of range for rank {x.ndim}")
    return norm


@register("ReduceSum")
def reduce_sum(ctx: KernelContext, node: Node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    ax = _reduce_axes(node, x, axes)
    if ax is None:
        return x
    return np.sum(x, axis=ax, keepdims=bool(node.attrs.get("keepdims", 1)), dtype=x.dtype)


@register("ReduceMean")
def reduce_mean(ctx: KernelContext, node: Node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    ax = _reduce_axes(node, x, axes)
    if ax is None:
        return x
    keep = bool(node.attrs.get("keepdims", 1))
    if np.issubdtype(x.dtype, np.floating):
        return np.mean(x, axis=ax, keepdims=keep, dtype=x.dtype)
    n = int(np.prod([x.shape[a] for a in ax]))  # integer mean: integer sum / count, truncated
    s = np.sum(x, axis=ax, keepdims=keep, dtype=np.int64)
    return (np.sign(s) * (np.abs(s) // max(n, 1))).astype(x.dtype)


def _shifted(node: Node, x: np.ndarray) -> tuple[np.ndarray, int]:
    axis = int(node.attrs.get("axis", -1))
    return x - np.max(x, axis=axis, keepdims=True), axis


@register("Softmax")
def softmax(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """Opset-13 semantics: along one axis (default -1), max-shifted for stability."""
    z, axis = _shifted(node, x)
    e = np.exp(z)
    e /= np.sum(e, axis=axis, keepdims=True, dtype=e.dtype)
    return e


@register("LogSoftmax")
def log_softmax(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """Opset-13 semantics: x - max - log(sum(exp(x - max))) along one axis (default -1)."""
    z, axis = _shifted(node, x)
    z -= np.log(np.sum(np.exp(z), axis=axis, keepdims=True, dtype=z.dtype))
    return z


@register("ArgMax")
def arg_max(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """int64 indices along ``axis`` (default 0); first maximum unless select_last_index=1."""
    axis = int(node.attrs.get("axis", 0))
    axis = axis + x.ndim if axis < 0 else axis
    keep = bool(node.attrs.get("keepdims", 1))
    if int(node.attrs.get("select_last_index", 0)):
        idx = x.shape[axis] - 1 - np.argmax(np.flip(x, axis=axis), axis=axis, keepdims=keep)
    else:
        idx = np.argmax(x, axis=axis, keepdims=keep)
    return idx.astype(np.int64, copy=False)

"""Backward kernels of element-wise and data-movement ops (rctc domain).

Conventions (inputs; attributes):
  ReluGrad(dy, y)                          dy where y > 0, else 0 (y = relu(x): the same mask as x > 0)
  LeakyReluGrad(dy, x; alpha)              dy where x >= 0, else alpha * dy (the forward's branch test)
  SigmoidGrad(dy, y)                       dy * y * (1 - y), y the forward output
  TanhGrad(dy, y)                          dy * (1 - y^2), y the forward output
  ClipGrad(dy, x, min?, max?; min, max)    dy where min < x < max (strict, like PyTorch's hardtanh / ReLU6);
                                           bounds from the optional inputs, else the attributes
  DropoutGrad(dy, mask, ratio?, training_mode?; ratio)
                                           dy * mask / (1 - ratio) when the forward dropped (training),
                                           dy unchanged otherwise (the forward was the identity)
  GatherGrad(dy, indices; table_shape, axis)
                                           scatter-add of dy rows into zeros(table_shape); repeated
                                           indices accumulate; negative indices count from the end
  ConcatGrad(dy; axis, split, select)      the pieces of dy along ``axis`` (sizes ``split``) whose
                                           positions are listed in ``select``, one output each

Every kernel returns new arrays (or views of ``dy``) and never writes into its inputs; results
have the dtype of the node's output value (the dtype of the differentiated tensor).
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.elementwise import const
from rctc.runtime.kernels.registry import KernelContext, register


def _as_out(node: Node, arr: np.ndarray, i: int = 0) -> np.ndarray:
    dt = node.outputs[i].dtype if i < len(node.outputs) else None
    return arr if dt is None or arr.dtype == dt else arr.astype(dt)


#: Below this many elements ``np.where`` beats :func:`masked`'s three passes (the call overhead
#: dominates; measured on float32, 2-core AVX2).
_SMALL = 2048


_BITS = {1: np.dtype(np.int8), 2: np.dtype(np.int16), 4: np.dtype(np.int32), 8: np.dtype(np.int64)}


def masked(keep: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``np.where(keep, a, 0)`` bit for bit (NaNs, signed zeros) as a new array.

    numpy's ``where`` branches per element and is ~10x slower than streaming arithmetic on an
    unpredictable mask; here the mask becomes all-ones / all-zeros words (``-keep`` in an integer
    type of ``a``'s item size) that are and-ed with the bits of ``a``: a kept element keeps its
    exact bit pattern, a dropped one becomes +0. Uses ``np.where`` itself for small arrays (fewer
    calls) and when shapes differ (broadcasting) or ``a`` is not a C-contiguous numeric array.
    """
    it = _BITS.get(a.dtype.itemsize)
    if (a.size < _SMALL or it is None or a.dtype.kind not in "fiu" or keep.shape != a.shape
            or keep.dtype != np.bool_ or not a.flags.c_contiguous or not keep.flags.c_contiguous):
        return np.where(keep, a, const(0, a.dtype))
    bits = np.empty(a.shape, dtype=it)
    np.negative(keep.view(np.int8), out=bits, casting="unsafe")  # True -> -1 (all ones), False -> 0
    np.bitwise_and(bits, a.view(it), out=bits)
    return bits.view(a.dtype)


@register("ReluGrad")
def relu_grad(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    return _as_out(node, masked(np.greater(x, const(0, x.dtype)), dy))


@register("LeakyReluGrad")
def leaky_relu_grad(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    alpha = np.asarray(node.attrs.get("alpha", 0.01), dtype=dy.dtype)
    return _as_out(node, np.where(x >= 0, dy, dy * alpha))


@register("SigmoidGrad")
def sigmoid_grad(ctx: KernelContext, node: Node, dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    y = y.astype(dy.dtype, copy=False)
    return _as_out(node, dy * y * (np.asarray(1, dy.dtype) - y))


@register("TanhGrad")
def tanh_grad(ctx: KernelContext, node: Node, dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    y = y.astype(dy.dtype, copy=False)
    return _as_out(node, dy * (np.asarray(1, dy.dtype) - y * y))


@register("ClipGrad")
def clip_grad(
    ctx: KernelContext,
    node: Node,
    dy: np.ndarray,
    x: np.ndarray,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
) -> np.ndarray:
    if lo is None and "min" in node.attrs:
        lo = np.asarray(node.attrs["min"])
    if hi is None and "max" in node.attrs:
        hi = np.asarray(node.attrs["max"])
    keep: np.ndarray | None = None
    if lo is not None:
        keep = np.greater(x, np.asarray(lo).astype(x.dtype, copy=False))
    if hi is not None:
        below = np.less(x, np.asarray(hi).astype(x.dtype, copy=False))
        keep = below if keep is None else np.bitwise_and(keep, below, out=keep)
    if keep is None:
        keep = np.ones(x.shape, dtype=bool)
    return _as_out(node, masked(keep, dy))


@register("DropoutGrad")
def dropout_grad(
    ctx: KernelContext,
    node: Node,
    dy: np.ndarray,
    mask: np.ndarray,
    ratio: np.ndarray | None = None,
    training_mode: np.ndarray | None = None,
) -> np.ndarray:
    """Mirrors the Dropout forward kernel: it drops only in training (ctx or training_mode input)."""
    r = float(np.asarray(ratio).reshape(-1)[0]) if ratio is not None else float(node.attrs.get("ratio", 0.5))
    flag = training_mode is not None and bool(np.asarray(training_mode).reshape(-1)[0])
    if not (ctx.training or flag) or r == 0.0:
        return _as_out(node, dy.copy())
    if r >= 1.0:
        return np.zeros(dy.shape, dtype=node.outputs[0].dtype or dy.dtype)
    g = dy * mask
    g *= np.asarray(1.0 / (1.0 - r), dtype=g.dtype)
    return _as_out(node, g)


@register("GatherGrad")
def gather_grad(ctx: KernelContext, node: Node, dy: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Deterministic scatter-add: sort the indices, sum each run of equal ones with add.reduceat."""
    table_shape = tuple(int(d) for d in node.attrs["table_shape"])
    rank = len(table_shape)
    axis = int(node.attrs.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    n = table_shape[axis]
    idx = np.asarray(indices).astype(np.int64, copy=False).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"GatherGrad indices out of range [-{n}, {n - 1}]")
    idx = np.where(idx < 0, idx + n, idx)
    pre = math.prod(table_shape[:axis])
    post = math.prod(table_shape[axis + 1 :])
    dt = node.outputs[0].dtype or dy.dtype
    out = np.zeros((n, pre, post), dtype=dt)
    if idx.size:
        rows = dy.astype(dt, copy=False).reshape(pre, idx.size, post).transpose(1, 0, 2)
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        uniq, starts = np.unique(sorted_idx, return_index=True)
        out[uniq] = np.add.reduceat(rows[order], starts, axis=0)
    return np.ascontiguousarray(out.transpose(1, 0, 2)).reshape(table_shape)


@register("ConcatGrad")
def concat_grad(ctx: KernelContext, node: Node, dy: np.ndarray) -> tuple[np.ndarray, ...]:
    axis = int(node.attrs["axis"])
    axis = axis + dy.ndim if axis < 0 else axis
    split = [int(s) for s in node.attrs["split"]]
    if sum(split) != dy.shape[axis]:
        raise ValueError(f"ConcatGrad split {split} does not add up to dim {dy.shape[axis]} of axis {axis}")
    offs = np.cumsum([0] + split)
    lead = (slice(None),) * axis
    select = [int(i) for i in node.attrs["select"]]
    return tuple(
        _as_out(node, dy[lead + (slice(int(offs[i]), int(offs[i + 1])),)], k) for k, i in enumerate(select)
    )

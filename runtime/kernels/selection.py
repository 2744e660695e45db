"""Kernels of the selection ops (rctc/ops/selection.py): Where, Max, Min, ReduceMax, ReduceMin,
ArgMin, Split, Tile, and their gradients (plus SliceGrad). Plain numpy; inputs never written."""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register


@register("Where")
def where(ctx: KernelContext, node: Node, cond: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(cond, x, y).astype(np.result_type(x, y), copy=False)


def _extremum(fn: np.ufunc, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    out = np.asarray(inputs[0])
    for x in inputs[1:]:
        out = fn(out, x)
    return np.array(out, copy=True)


@register("Max")
def max_(ctx: KernelContext, node: Node, *inputs: np.ndarray) -> np.ndarray:
    """Element-wise maximum (a NaN input gives NaN, as onnxruntime)."""
    return _extremum(np.maximum, inputs)


@register("Min")
def min_(ctx: KernelContext, node: Node, *inputs: np.ndarray) -> np.ndarray:
    return _extremum(np.minimum, inputs)


def _axes(node: Node, x: np.ndarray, axes: np.ndarray | None) -> tuple[int, ...] | None:
    """The reduced axes; None means no reduction (noop_with_empty_axes with no axes)."""
    if axes is None or np.asarray(axes).size == 0:
        listed = node.attrs.get("axes")
        if not listed:
            return None if int(node.attrs.get("noop_with_empty_axes", 0)) else tuple(range(x.ndim))
        axes = np.asarray(listed)
    return tuple(sorted(int(a) % x.ndim for a in np.asarray(axes).reshape(-1)))


def _reduce(fn: np.ufunc, node: Node, x: np.ndarray, axes: np.ndarray | None) -> np.ndarray:
    ax = _axes(node, x, axes)
    if ax is None:
        return x.copy()
    keep = bool(node.attrs.get("keepdims", 1))
    if any(x.shape[a] == 0 for a in ax):  # the spec: an empty max is -inf (the type's min), an empty min +inf
        info = np.finfo(x.dtype) if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype)
        big = np.inf if np.issubdtype(x.dtype, np.floating) else info.max
        small = -np.inf if np.issubdtype(x.dtype, np.floating) else info.min
        return fn.reduce(x, axis=ax, keepdims=keep, initial=small if fn is np.maximum else big)
    return fn.reduce(x, axis=ax, keepdims=keep)


@register("ReduceMax")
def reduce_max(ctx: KernelContext, node: Node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    return _reduce(np.maximum, node, x, axes)


@register("ReduceMin")
def reduce_min(ctx: KernelContext, node: Node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    return _reduce(np.minimum, node, x, axes)


@register("ArgMin")
def arg_min(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """int64 indices along ``axis``; the first minimum unless select_last_index=1."""
    axis = int(node.attrs.get("axis", 0)) % x.ndim
    keep = bool(node.attrs.get("keepdims", 1))
    if int(node.attrs.get("select_last_index", 0)):
        idx = x.shape[axis] - 1 - np.argmin(np.flip(x, axis=axis), axis=axis, keepdims=keep)
    else:
        idx = np.argmin(x, axis=axis, keepdims=keep)
    return idx.astype(np.int64, copy=False)


@register("Split")
def split(ctx: KernelContext, node: Node, x: np.ndarray, sizes: np.ndarray | None = None) -> tuple:
    """Parts along ``axis``: the sizes of ``split``, else ``num_outputs`` (or one per output) equal
    parts, the last one smaller when the axis does not divide (ONNX opset 18)."""
    axis = int(node.attrs.get("axis", 0)) % x.ndim
    if sizes is not None:
        parts = [int(s) for s in np.asarray(sizes).reshape(-1)]
    else:
        n = int(node.attrs.get("num_outputs") or len(node.outputs))
        size = -(-x.shape[axis] // n)
        parts = [min(size, x.shape[axis] - k * size) for k in range(n)]
    if sum(parts) != x.shape[axis]:
        raise ValueError(f"split sizes {parts} do not add up to the axis length {x.shape[axis]}")
    return tuple(np.array(p, copy=True) for p in np.split(x, np.cumsum(parts)[:-1], axis=axis))


@register("Tile")
def tile(ctx: KernelContext, node: Node, x: np.ndarray, repeats: np.ndarray) -> np.ndarray:
    return np.tile(x, [int(r) for r in np.asarray(repeats).reshape(-1)])


# ----------------------------------------------------------------------------- gradients
@register("WhereGrad")
def where_grad(ctx: KernelContext, node: Node, dy: np.ndarray, cond: np.ndarray) -> np.ndarray:
    """dY where the condition picked this branch (1: X, 2: Y), else 0, at dY's (broadcast) shape."""
    picked = np.broadcast_to(cond, dy.shape)
    if int(node.attrs["branch"]) == 2:
        picked = ~picked
    return np.where(picked, dy, np.zeros((), dy.dtype))


@register("ExtremumGrad")
def extremum_grad(ctx: KernelContext, node: Node, dy: np.ndarray, y: np.ndarray, *inputs: np.ndarray) -> np.ndarray:
    """dY / (number of inputs equal to Y) where input ``index`` equals Y, else 0 (torch.maximum's rule)."""
    hits = [np.broadcast_to(x == y, y.shape) for x in inputs]
    count = np.sum(hits, axis=0, dtype=dy.dtype)
    mine = hits[int(node.attrs["index"])]
    return np.where(mine, dy / np.maximum(count, 1), np.zeros((), dy.dtype)).astype(dy.dtype, copy=False)


@register("ReduceExtremumGrad")
def reduce_extremum_grad(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dY shared evenly among the positions that attain the extremum (torch.amax's rule)."""
    axes = tuple(int(a) for a in node.attrs["axes"])
    if not int(node.attrs.get("keepdims", 1)):
        dy, y = np.expand_dims(dy, axes), np.expand_dims(y, axes)
    hit = x == y
    count = np.sum(hit, axis=axes, keepdims=True, dtype=dy.dtype)
    return np.where(hit, dy / count, np.zeros((), dy.dtype)).astype(dy.dtype, copy=False)


@register("SplitGrad")
def split_grad(ctx: KernelContext, node: Node, *dys: np.ndarray | None) -> np.ndarray:
    """The parts' gradients concatenated back; a part nothing read contributes zeros."""
    axis, sizes = int(node.attrs["axis"]), [int(s) for s in node.attrs["sizes"]]
    shape = [int(d) for d in node.attrs["input_shape"]]
    dtype = next(d.dtype for d in dys if d is not None)
    parts = []
    for d, size in zip(dys, sizes, strict=True):
        if d is None:
            d = np.zeros([*shape[:axis], size, *shape[axis + 1:]], dtype)
        parts.append(d)
    return np.concatenate(parts, axis=axis)


@register("TileGrad")
def tile_grad(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    """dY summed over the repeats: viewed as (r0, d0, r1, d1, ...) and summed over every r."""
    reps = [int(r) for r in node.attrs["repeats"]]
    dims = [s // r for s, r in zip(dy.shape, reps, strict=True)]
    view = dy.reshape([v for pair in zip(reps, dims, strict=True) for v in pair])
    return view.sum(axis=tuple(range(0, 2 * len(reps), 2)))


@register("SliceGrad")
def slice_grad(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    """Zeros of X's shape with dY written at the positions Slice read (``index``: [axis, start,
    stop, step] per sliced axis, as ``slice.indices`` normalises them at compile time)."""
    out = np.zeros(node.outputs[0].shape, dy.dtype)
    index: list[slice] = [slice(None)] * out.ndim
    for axis, start, stop, step in node.attrs["index"]:
        index[int(axis)] = slice(int(start), None if int(stop) < 0 and int(step) < 0 else int(stop), int(step))
    out[tuple(index)] = dy
    return out


_COMPARISONS = {"Greater": np.greater, "Less": np.less, "Equal": np.equal, "GreaterOrEqual": np.greater_equal,
                "LessOrEqual": np.less_equal, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}


def _comparison(fn: np.ufunc):  # noqa: ANN202 - a kernel factory
    def kernel(ctx: KernelContext, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(fn(a, b), dtype=np.bool_)
    return kernel


for _op, _fn in _COMPARISONS.items():
    register(_op)(_comparison(_fn))


@register("Not")
def not_(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    return np.logical_not(x)

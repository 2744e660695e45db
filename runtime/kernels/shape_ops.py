"""Shape-manipulation forward kernels: Flatten, Reshape, Transpose, Concat, Squeeze, Unsqueeze,
Gather, Shape, Expand, Slice.

Where numpy can, results are views of the input (kernels never write into inputs, so sharing
memory is safe); Expand materialises its broadcast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels._im2col import cached_plan
from rctc.runtime.kernels.registry import KernelContext, register


def _ints(v: np.ndarray | Sequence[int]) -> list[int]:
    return [int(a) for a in np.asarray(v).reshape(-1)]


def _norm_axis(a: int, rank: int) -> int:
    if not -rank <= a < rank:
        raise ValueError(f"axis {a} out of range for rank {rank}")
    return a + rank if a < 0 else a


@register("Flatten")
def flatten(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """2-D (prod(shape[:axis]), prod(shape[axis:])); axis default 1, may be negative or == rank."""
    axis = int(node.attrs.get("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        raise ValueError(f"Flatten axis {node.attrs.get('axis')} out of range for rank {x.ndim}")
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _reshape_target(node: Node, x_shape: tuple[int, ...], shape: np.ndarray) -> tuple[int, ...]:
    target = _ints(shape)
    if not int(node.attrs.get("allowzero", 0)):
        target = [x_shape[i] if d == 0 else d for i, d in enumerate(target)]
    return tuple(target)


@register("Reshape")
def reshape(ctx: KernelContext, node: Node, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """0 copies the input dim (unless allowzero=1, then it is a zero dim), -1 is inferred."""
    shape = np.asarray(shape)
    # the target, parsed once per (input shape, shape tensor) of the node
    target = cached_plan(node, (x.shape, shape.dtype, shape.shape, shape.tobytes()),
                         lambda: _reshape_target(node, x.shape, shape))
    return x.reshape(target)


@register("Transpose")
def transpose(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    perm = cached_plan(node, "perm", lambda: None if node.attrs.get("perm") is None else _ints(node.attrs["perm"]))
    return x.transpose() if perm is None else x.transpose(perm)  # np.transpose without its Python layer


@register("Concat")
def concat(ctx: KernelContext, node: Node, *xs: np.ndarray) -> np.ndarray:
    return np.concatenate(xs, axis=int(node.attrs["axis"]))


def _axes(node: Node, axes_in: np.ndarray | None) -> list[int] | None:
    """Axes from the optional input (opset >= 13) or the ``axes`` attribute (older opsets)."""
    if axes_in is not None:
        return _ints(axes_in)
    if "axes" in node.attrs:
        return _ints(node.attrs["axes"])
    return None


@register("Squeeze")
def squeeze(ctx: KernelContext, node: Node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    """Remove the given size-1 axes (all size-1 axes if none are given)."""
    ax = _axes(node, axes)
    if ax is None or not ax:
        return np.squeeze(x)
    norm = tuple(sorted({_norm_axis(a, x.ndim) for a in ax}))
    bad = [a for a in norm if x.shape[a] != 1]
    if bad:
        raise ValueError(f"Squeeze axes {bad} of shape {x.shape} are not 1")
    return np.squeeze(x, axis=norm)


@register("Unsqueeze")
def unsqueeze(ctx: KernelContext, node: Node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    """Insert size-1 axes; negative axes count from the end of the *output* rank."""
    ax = _axes(node, axes)
    if not ax:
        raise ValueError("Unsqueeze needs axes")
    out_rank = x.ndim + len(ax)
    norm = sorted(_norm_axis(a, out_rank) for a in ax)
    if len(set(norm)) != len(norm):
        raise ValueError(f"Unsqueeze axes {ax} repeat an axis")
    return np.expand_dims(x, tuple(norm))


@register("Gather")
def gather(ctx: KernelContext, node: Node, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """np.take along ``axis`` (default 0); negative indices count from the end, out of range raises."""
    axis = _norm_axis(int(node.attrs.get("axis", 0)), x.ndim)
    return np.take(x, gather_indices(indices, x.shape[axis], "Gather"), axis=axis)


def gather_indices(indices: np.ndarray, n: int, what: str) -> np.ndarray:
    """``indices`` as int64 in ``[0, n)``: negative ones count from the end, any outside ``[-n, n)``
    raises IndexError naming ``what``."""
    idx = np.asarray(indices).astype(np.int64, copy=False)
    if idx.size:
        lo, hi = int(np.minimum.reduce(idx, axis=None)), int(np.maximum.reduce(idx, axis=None))
        if lo < -n or hi >= n:
            raise IndexError(f"{what} indices out of range [-{n}, {n - 1}]")
        if lo < 0:
            idx = np.where(idx < 0, idx + n, idx)
    return idx


@register("Shape")
def shape(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """int64 shape, sliced by the optional ``start``/``end`` attributes (opset 15, clamped)."""
    dims = np.asarray(x.shape, dtype=np.int64)
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end")
    return dims[int(start) : None if end is None else int(end)].copy()


@register("Expand")
def expand(ctx: KernelContext, node: Node, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Bidirectional broadcast of ``x`` with ``shape`` (a target dim of 1 keeps the input dim)."""
    out = np.broadcast_shapes(x.shape, tuple(_ints(shape)))
    return np.broadcast_to(x, out).copy()


@register("Slice")
def slice_(
    ctx: KernelContext,
    node: Node,
    x: np.ndarray,
    starts: np.ndarray | None = None,
    ends: np.ndarray | None = None,
    axes: np.ndarray | None = None,
    steps: np.ndarray | None = None,
) -> np.ndarray:
    """ONNX Slice (inputs since opset 10, attributes starts/ends/axes in opset 1).

    Python slice semantics equal ONNX's clamping rules: starts/ends clamp to [0, dim] for
    positive steps and to [-1, dim-1] (-1 = before the first element) for negative steps.
    """
    st = _ints(starts) if starts is not None else _ints(node.attrs["starts"])
    en = _ints(ends) if ends is not None else _ints(node.attrs["ends"])
    if axes is not None:
        ax = _ints(axes)
    elif "axes" in node.attrs:
        ax = _ints(node.attrs["axes"])
    else:
        ax = list(range(len(st)))
    sp = _ints(steps) if steps is not None else [1] * len(st)
    if not len(st) == len(en) == len(ax) == len(sp):
        raise ValueError("Slice starts/ends/axes/steps differ in length")
    index: list[slice] = [slice(None)] * x.ndim
    for s, e, a, k in zip(st, en, ax, sp, strict=True):
        if k == 0:
            raise ValueError("Slice step must not be 0")
        index[_norm_axis(a, x.ndim)] = slice(s, e, k)
    return x[tuple(index)]

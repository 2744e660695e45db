"""Gradient rules of shape and data-movement ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
Concat, Gather, and the reductions ReduceSum, ReduceMean.

Reshape-like ops send dy back through an ONNX ``Reshape`` to the input's shape (a new int64
constant); Transpose through the inverse permutation. rctc ops (runtime kernels in
grad_elementwise.py / training.py):
  ConcatGrad(dy; axis, split, select) -> one piece per input that needs a gradient
  GatherGrad(dy, indices; table_shape, axis) -> scatter-add into a zero table (indices get none)
  ReduceSumGrad / ReduceMeanGrad(dy; shape, axes, keepdims) -> dy broadcast back (/ count)
Axes given as inputs (opset >= 13 / 18) must be constants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rctc.errors import UnsupportedOpError
from rctc.ir import Node, Value
from rctc.passes.grad_rules import rule
from rctc.passes.grad_rules.elementwise import wants

if TYPE_CHECKING:
    from rctc.passes.build_backward import BackwardBuilder


def _pad(grads: list[Value | None], node: Node) -> list[Value | None]:
    return grads + [None] * (len(node.inputs) - len(grads))


@rule("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    """All four only re-index the same elements: dx = Reshape(dy, shape(x))."""
    x = node.inputs[0]
    if not wants(b, x):
        return _pad([None], node)
    shape = b.g.add_const(f"{x.name}.shape", np.asarray(x.shape, dtype=np.int64).reshape(-1))
    attrs = {"allowzero": 1} if 0 in x.shape else None
    return _pad([b.like("Reshape", [dys[0], shape], x, attrs)], node)


@rule("Transpose")
def transpose_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    x = node.inputs[0]
    if not wants(b, x):
        return [None]
    rank = len(x.shape)
    perm = node.attrs.get("perm")
    perm = list(range(rank))[::-1] if perm is None else [int(p) + rank if int(p) < 0 else int(p) for p in perm]
    inv = [int(i) for i in np.argsort(perm)]
    return [b.like("Transpose", [dys[0]], x, {"perm": inv})]


@rule("Concat")
def concat_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    ins = list(node.inputs)
    select = [i for i, v in enumerate(ins) if wants(b, v)]
    if not select:
        return [None] * len(ins)
    rank = len(node.outputs[0].shape)
    axis = int(node.attrs["axis"])
    axis = axis + rank if axis < 0 else axis
    attrs = {"axis": axis, "split": [int(v.shape[axis]) for v in ins], "select": select}
    outs = b.op("ConcatGrad", [dys[0]],
                [(f"grad::{ins[i].name}", ins[i].shape, ins[i].dtype) for i in select], attrs)
    grads: list[Value | None] = [None] * len(ins)
    for i, o in zip(select, outs):
        grads[i] = o
    return grads


@rule("Gather")
def gather_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    data, indices = node.inputs[0], node.inputs[1]
    if not wants(b, data):
        return [None, None]
    rank = len(data.shape)
    axis = int(node.attrs.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    attrs = {"table_shape": [int(d) for d in data.shape], "axis": axis}
    return [b.like("GatherGrad", [dys[0], indices], data, attrs), None]


def _reduce_axes(node: Node, rank: int) -> list[int] | None:
    """Sorted non-negative axes; None for a no-op (empty axes with noop_with_empty_axes=1)."""
    axes_in = node.input(1)
    if axes_in is not None:
        if axes_in.data is None:
            raise UnsupportedOpError(
                f"{node.op_type} {node.name!r}: axes come from a computed tensor {axes_in.name!r}; "
                "only constant axes can be differentiated"
            )
        axes = [int(a) for a in np.asarray(axes_in.data).reshape(-1)]
    else:
        axes = [int(a) for a in node.attrs.get("axes", []) or []]
    if not axes:
        return None if int(node.attrs.get("noop_with_empty_axes", 0)) else list(range(rank))
    return sorted({a + rank if a < 0 else a for a in axes})


@rule("ReduceSum", "ReduceMean")
def reduce_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    x = node.inputs[0]
    if not wants(b, x):
        return _pad([None], node)
    axes = _reduce_axes(node, len(x.shape))
    if axes is None:
        return _pad([dys[0]], node)
    attrs = {"shape": [int(d) for d in x.shape], "axes": axes, "keepdims": int(node.attrs.get("keepdims", 1))}
    op = "ReduceSumGrad" if node.op_type == "ReduceSum" else "ReduceMeanGrad"
    return _pad([b.like(op, [dys[0]], x, attrs)], node)

"""Selection and repetition: Where, Max, Min, ReduceMax, ReduceMin, ArgMin, Split, Tile, and their
gradient ops (SliceGrad is defined here too; Slice's and Expand's rules live with them in
rctc.ops.layout).

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the definitions (float islands in rct mode). Ties follow PyTorch: the gradient of Max /
Min (``torch.maximum``) and of ReduceMax / ReduceMin (``torch.amax``) is split evenly among the
inputs or positions that attain the extremum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rctc.ops import costs
from rctc.ops.costs import e, inp, per_output
from rctc.ops.schema import ELEMENTWISE, GRADIENT, definer

_elem = definer("elementwise")
_pool = definer("pooling")
_layout = definer("layout")
_grad = definer("layout", domain="rctc", traits={GRADIENT})


def _const_ints(node: Any, i: int) -> list[int] | None:
    v = node.input(i) if i < len(node.inputs) else None
    if v is None:
        return None
    if v.data is None:
        from rctc.errors import UnsupportedOpError

        raise UnsupportedOpError(f"{node.op_type} {node.name!r}: input {v.name!r} must be a constant to train "
                                 "through the op; export it with constant axes / repeats / splits")
    return [int(x) for x in np.asarray(v.data).reshape(-1)]


def _reduce_axes(node: Any, rank: int) -> list[int]:
    """The axes a Reduce* node reduces (opset 18: an optional constant input; none = all axes)."""
    axes = _const_ints(node, 1)
    if axes is None:
        axes = node.attrs.get("axes")
    if not axes:
        return [] if int(node.attrs.get("noop_with_empty_axes", 0)) else list(range(rank))
    return sorted(a % rank for a in axes)


# ----------------------------------------------------------------------------- gradient rules
def _where_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    cond, x, y = node.inputs
    grads: list[Any] = [None, None, None]
    if dys[0] is None:
        return grads
    for k, v in ((1, x), (2, y)):
        if b.wants(v):
            full = b.op("WhereGrad", [dys[0], cond], [(f"grad::{v.name}.full", dys[0].shape, v.dtype)],
                        {"branch": k})[0]
            grads[k] = b.reduce_to(full, v)
    return grads


def _extremum_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    y = node.outputs[0]
    grads: list[Any] = [None] * len(node.inputs)
    if dys[0] is None:
        return grads
    for k, v in enumerate(node.inputs):
        if b.wants(v):
            full = b.op("ExtremumGrad", [dys[0], y, *node.inputs], [(f"grad::{v.name}.full", y.shape, v.dtype)],
                        {"index": k})[0]
            grads[k] = b.reduce_to(full, v)
    return grads


def _reduce_extremum_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    x, y = node.input(0), node.outputs[0]
    grads: list[Any] = [None] * len(node.inputs)
    if dys[0] is not None and b.wants(x):
        grads[0] = b.like("ReduceExtremumGrad", [dys[0], x, y], x,
                          {"axes": _reduce_axes(node, len(x.shape)), "keepdims": int(node.attrs.get("keepdims", 1))})
    return grads


def _split_sizes(node: Any) -> list[int]:
    return [int(o.shape[int(node.attrs.get("axis", 0)) % len(o.shape)]) for o in node.outputs]


def _split_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    x = node.input(0)
    grads: list[Any] = [None] * len(node.inputs)
    if b.wants(x) and any(d is not None for d in dys):
        axis = int(node.attrs.get("axis", 0)) % len(x.shape)
        grads[0] = b.like("SplitGrad", list(dys), x, {"axis": axis, "sizes": _split_sizes(node),
                                                      "input_shape": list(x.shape)})
    return grads


def _tile_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    x = node.input(0)
    grads: list[Any] = [None] * len(node.inputs)
    if dys[0] is not None and b.wants(x):
        grads[0] = b.like("TileGrad", [dys[0]], x, {"repeats": _const_ints(node, 1)})
    return grads


# ----------------------------------------------------------------------------- definitions
def _n_inputs(i: Any) -> int:
    return len([v for v in i if v is not None])


_elem("Where", ("condition", "X", "Y"), outputs=("output",), traits={ELEMENTWISE}, differentiable=("X", "Y"),
      grad=_where_grad, cost=per_output(cmp=1), doc="X where condition else Y (broadcast)")
for _name in ("Max", "Min"):
    _elem(_name, ("*data_0",), outputs=(_name.lower(),), traits={ELEMENTWISE}, differentiable=("data_0",),
          grad=_extremum_grad, cost=costs.ops(lambda n, i, o: {"cmp": e(o) * max(_n_inputs(i) - 1, 1)}),
          doc="element-wise extremum of the inputs (ties share the gradient, as torch.maximum)")
for _name in ("ReduceMax", "ReduceMin"):
    _pool(_name, ("data", "axes?"), outputs=("reduced",), attrs={"keepdims": 1, "noop_with_empty_axes": 0},
          differentiable=("data",), grad=_reduce_extremum_grad,
          cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size - e(o)}),
          doc="extremum over axes (ties share the gradient, as torch.amax / amin)")
_pool("ArgMin", ("data",), outputs=("reduced",), attrs={"axis": 0, "keepdims": 1, "select_last_index": 0},
      cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size}))
_layout("Split", ("input", "split?"), outputs=("*outputs",), attrs={"axis": 0, "num_outputs": None},
        differentiable=("input",), grad=_split_grad, cost=costs.free, doc="equal parts, or the sizes of split")
_layout("Tile", ("input", "repeats"), outputs=("output",), differentiable=("input",), grad=_tile_grad,
        cost=costs.free, doc="input repeated along each axis")

_grad("WhereGrad", ("dY", "condition"), outputs=("dX",), attrs={"branch": 1}, cost=per_output(cmp=1))
_grad("ExtremumGrad", ("dY", "Y", "*inputs"), outputs=("dX",), attrs={"index": 0},
      cost=costs.ops(lambda n, i, o: {"cmp": e(o) * (_n_inputs(i) - 2), "mult": e(o)}))
_grad("ReduceExtremumGrad", ("dY", "X", "Y"), outputs=("dX",), attrs={"axes": None, "keepdims": 1},
      cost=costs.ops(lambda n, i, o: {"cmp": e(o), "mult": e(o)}))
_grad("SplitGrad", ("*dYs",), outputs=("dX",), attrs={"axis": 0, "sizes": None, "input_shape": None},
      cost=costs.free)
_grad("TileGrad", ("dY",), outputs=("dX",), attrs={"repeats": None},
      cost=costs.ops(lambda n, i, o: {"add": max(inp(i).size - e(o), 0)}))
_grad("SliceGrad", ("dY",), outputs=("dX",), attrs={"index": None}, cost=costs.free)

# comparisons and logic: no gradient (a boolean output), used by Where's condition and masks
for _name in ("Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor"):
    _elem(_name, ("A", "B"), outputs=("C",), traits={ELEMENTWISE}, cost=per_output(cmp=1))
_elem("Not", ("X",), traits={ELEMENTWISE}, cost=per_output(cmp=1))

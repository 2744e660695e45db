"""Layout and data movement: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Shape, Concat,
Gather, Expand, Slice, Resize (nearest / linear), Pad (constant / reflect / edge) and their
gradient ops.

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the definitions. ``LAYOUT`` ops rearrange elements, so insert_quant runs them on the
integers between a value and a product; ``RESHAPE`` ones also keep the element order;
``VIEW`` ops move no bytes. Gather's table (an embedding) may be a parameter. Resize and Pad
carry their gradient rules (the taps of rctc.ops.resample, scattered back); they are float
islands in rct mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rctc.errors import UnsupportedOpError
from rctc.ops import costs
from rctc.ops.costs import inp
from rctc.ops.resample import pad_plan, resize_plan
from rctc.ops.schema import GRADIENT, LAYOUT, RESHAPE, VIEW, WEIGHTED, definer

op = definer("layout")
grad = definer("layout", domain="rctc", traits={GRADIENT})
_RESHAPE = {LAYOUT, RESHAPE, VIEW}

op("Reshape", ("data", "shape"), outputs=("reshaped",), attrs={"allowzero": 0}, traits=_RESHAPE,
   differentiable=("data",), cost=costs.free, c_kernel="a view (no copy)")
op("Flatten", ("input",), outputs=("output",), attrs={"axis": 1}, traits=_RESHAPE, differentiable=("input",),
   cost=costs.free, c_kernel="a view (no copy)")
op("Squeeze", ("data", "axes?"), outputs=("squeezed",), traits=_RESHAPE, differentiable=("data",), cost=costs.free)
op("Unsqueeze", ("data", "axes?"), outputs=("expanded",), traits=_RESHAPE, differentiable=("data",),
   cost=costs.free)
op("Transpose", ("data",), outputs=("transposed",), attrs={"perm": None}, traits={LAYOUT, VIEW},
   differentiable=("data",), cost=costs.free, c_kernel="generated loops")
op("Shape", ("data",), outputs=("shape",), attrs={"end": None, "start": 0}, traits={VIEW}, rct="integer",
   cost=costs.free)
op("Concat", ("*inputs",), rct_lowering=("IntConcat",), outputs=("concat_result",), attrs={"axis": None},
   differentiable=("inputs",), cost=costs.free)
op("Gather", ("data", "indices"), outputs=("output",), attrs={"axis": 0}, traits={WEIGHTED}, differentiable=("data",),
   param_slots=(0,), cost=costs.free, c_kernel="generated loops", doc="an embedding lookup when data is a parameter",
   rct_lowering=("Gather",),
   rct_float_when="indices computed at run time into data that is not a parameter (a parameter's integers are "
                  "gathered by assign_slots; constant indices run on the integers)")
op("Expand", ("input", "shape"), differentiable=("input",), grad=lambda b, n, d: _expand_grad(b, n, d),
   cost=costs.free)
op("Slice", ("data", "starts", "ends", "axes?", "steps?"), differentiable=("data",),
   grad=lambda b, n, d: _slice_grad(b, n, d), cost=costs.free, doc="any steps (negative too); constant bounds")

grad("ConcatGrad", ("dY",), rct_lowering=("IntConcatGrad",), outputs=("*dinputs",), attrs={"axis": None, "sizes": None},
     cost=costs.free)
grad("GatherGrad", ("dY", "indices"), outputs=("ddata",), rct_lowering=("IntGatherGrad", "IntGatherScatter"),
     cost=costs.ops(lambda n, i, o: {"add": inp(i).size}))


# ----------------------------------------------------------------------------- Resize, Pad
def _const(node: Any, i: int) -> np.ndarray | None:
    """The constant value of input ``i`` (None when absent); a computed one is refused."""
    v = node.input(i) if i < len(node.inputs) else None
    if v is None:
        return None
    if v.data is None:
        raise UnsupportedOpError(f"{node.op_type} {node.name!r}: input {v.name!r} must be a constant to train "
                                 "through the op; export it with constant scales / sizes / pads")
    return np.asarray(v.data)


def _ints(node: Any, i: int) -> list[int] | None:
    c = _const(node, i)
    return None if c is None else [int(x) for x in c.reshape(-1)]


def _slice_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    """Slice picks elements: dX is zero but for the picked positions, which take dY."""
    x = node.input(0)
    grads: list[Any] = [None] * len(node.inputs)
    if dys[0] is None or not b.wants(x):
        return grads
    starts, ends = _ints(node, 1), _ints(node, 2)
    assert starts is not None and ends is not None
    axes = _ints(node, 3) or list(range(len(starts)))
    steps = _ints(node, 4) or [1] * len(starts)
    index = []
    for s, t, a, k in zip(starts, ends, axes, steps, strict=True):
        a %= len(x.shape)
        index.append([a, *slice(s, t, k).indices(int(x.shape[a]))])
    grads[0] = b.like("SliceGrad", [dys[0]], x, {"index": index})
    return grads


def _expand_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    """Expand broadcasts: dX sums dY back over the broadcast axes."""
    x = node.input(0)
    grads: list[Any] = [None] * len(node.inputs)
    if dys[0] is not None and b.wants(x):
        grads[0] = b.reduce_to(dys[0], x)
    return grads


def _resize_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    """Resize is linear in X: dX scatters dY back through the same taps (rctc.ops.resample)."""
    x = node.input(0)
    grads: list[Any] = [None] * len(node.inputs)
    if dys[0] is None or not b.wants(x):
        return grads
    scale, _ = resize_plan(node.attrs, x.shape, _const(node, 2), _const(node, 3), f"Resize {node.name!r}")
    keep = ("mode", "coordinate_transformation_mode", "nearest_mode")
    attrs = {k: node.attrs[k] for k in keep if k in node.attrs}
    grads[0] = b.like("ResizeGrad", [dys[0]], x, {**attrs, "scales": scale, "input_shape": list(x.shape)})
    return grads


def _pad_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    """Pad gathers (constant positions read nothing): dX scatters dY back to the positions read."""
    x = node.input(0)
    grads: list[Any] = [None] * len(node.inputs)
    if dys[0] is None or not b.wants(x):
        return grads
    pads = _const(node, 1)
    assert pads is not None
    begin, end = pad_plan(node.attrs, x.shape, pads, _const(node, 3), f"Pad {node.name!r}")
    grads[0] = b.like("PadGrad", [dys[0]], x, {"mode": node.attrs.get("mode", "constant"), "begin": begin,
                                               "end": end})
    return grads


def _resize_counts(n: Any, i: Any, o: Any) -> dict[str, int]:
    axes = sum(1 for a, b in zip(inp(i).shape, o[0].shape) if a != b)
    if str(n.attrs.get("mode", "nearest")) != "linear":
        return {}
    return {"mult": 2 * axes * costs.e(o), "add": axes * costs.e(o)}


op("Resize", ("X", "roi?", "scales?", "sizes?"),
   attrs={"antialias": 0, "axes": None, "coordinate_transformation_mode": "half_pixel", "cubic_coeff_a": -0.75,
          "exclude_outside": 0, "extrapolation_value": 0.0, "keep_aspect_ratio_policy": "stretch", "mode": "nearest",
          "nearest_mode": "round_prefer_floor"},
   differentiable=("X",), grad=_resize_grad, cost=costs.ops(_resize_counts),
   rct_lowering=("Resize",), rct_float_when="a mode other than nearest (linear taps are not on the input's grid)",
   limits=("mode 'cubic' is not supported", "coordinate_transformation_mode 'tf_crop_and_resize' is not supported",
           "coordinate_transformation_mode 'half_pixel_symmetric' is not supported", "antialias=1 is not supported",
           "keep_aspect_ratio_policy other than 'stretch' is not supported"),
   doc="nearest (4 rounding modes) / linear; half_pixel, pytorch_half_pixel, asymmetric, align_corners")
op("Pad", ("data", "pads", "constant_value?", "axes?"), outputs=("output",), attrs={"mode": "constant"},
   differentiable=("data",), grad=_pad_grad, cost=costs.free, limits=("mode 'wrap' is not supported",),
   c_kernel="generated loops (constant 0 / reflect / edge)",
   rct_lowering=("Pad",), rct_float_when="a constant other than 0 (not on the input's grid)",
   doc="constant / reflect / edge; pads as an input")
grad("ResizeGrad", ("dY",), rct_lowering=("IntResizeGrad",), rct_float_when="a mode other than nearest",
     outputs=("dX",), attrs={"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                                                     "nearest_mode": "round_prefer_floor", "scales": None,
                                                     "input_shape": None},
     cost=costs.ops(lambda n, i, o: {"add": 2 * inp(i).size, "mult": 2 * inp(i).size}),
     doc="dY scattered back through Resize's taps")
grad("PadGrad", ("dY",), rct_lowering=("IntPadGrad",), rct_float_when="mode wrap",
     outputs=("dX",), attrs={"mode": "constant", "begin": None, "end": None},
     cost=costs.ops(lambda n, i, o: {"add": max(inp(i).size - costs.e(o), 0)}),
     doc="dY summed back onto the positions Pad read")

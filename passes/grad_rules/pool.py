"""Gradient rules of pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.

All emit rctc ops (runtime/kernels/grad_pool.py) with ``auto_pad`` resolved to explicit pads:

* MaxPool -> ``MaxPoolGrad(dy, X)``: ``kernel_shape, strides, pads, dilations, ceil_mode``.
* AveragePool -> ``AveragePoolGrad(dy)``: the same plus ``count_include_pad`` and ``input_shape``.
* GlobalAveragePool -> ``GlobalAveragePoolGrad(dy)``: ``input_shape``.
* GlobalMaxPool -> ``MaxPoolGrad(dy, X)`` with one window covering all spatial axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rctc.errors import UnsupportedOpError
from rctc.ir import Node, Value
from rctc.ops.geometry import window_params
from rctc.passes.grad_rules import rule

if TYPE_CHECKING:
    from rctc.passes.build_backward import BackwardBuilder


def _window_attrs(node: Node, x: Value) -> dict[str, Any]:
    kernel = [int(v) for v in np.asarray(node.attrs["kernel_shape"]).reshape(-1)]
    ceil_mode = int(node.attrs.get("ceil_mode", 0))
    strides, dilations, pads, _ = window_params(node.attrs, x.shape, kernel, bool(ceil_mode))
    return {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dilations,
            "ceil_mode": ceil_mode}


@rule("MaxPool")
def max_pool_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    dy, x = dys[0], node.input(0)
    assert x is not None
    if len(dys) > 1 and dys[1] is not None:
        raise UnsupportedOpError(f"MaxPool {node.name!r}: no gradient through the Indices output")
    if dy is None or not b.needs(x):
        return [None]
    return [b.like("MaxPoolGrad", [dy, x], x, _window_attrs(node, x))]


@rule("AveragePool")
def average_pool_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    dy, x = dys[0], node.input(0)
    assert x is not None
    if dy is None or not b.needs(x):
        return [None]
    attrs = {**_window_attrs(node, x), "count_include_pad": int(node.attrs.get("count_include_pad", 0)),
             "input_shape": list(x.shape)}
    return [b.like("AveragePoolGrad", [dy], x, attrs)]


@rule("GlobalAveragePool")
def global_average_pool_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    dy, x = dys[0], node.input(0)
    assert x is not None
    if dy is None or not b.needs(x):
        return [None]
    return [b.like("GlobalAveragePoolGrad", [dy], x, {"input_shape": list(x.shape)})]


@rule("GlobalMaxPool")
def global_max_pool_grad(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]:
    dy, x = dys[0], node.input(0)
    assert x is not None
    if dy is None or not b.needs(x):
        return [None]
    k = len(x.shape) - 2
    attrs = {"kernel_shape": list(x.shape[2:]), "strides": [1] * k, "pads": [0] * (2 * k),
             "dilations": [1] * k, "ceil_mode": 0}
    return [b.like("MaxPoolGrad", [dy, x], x, attrs)]

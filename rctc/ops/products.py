"""Products: Conv, Gemm, MatMul, ConvTranspose, the convolution gradients and their integer twins.

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the GEMM-class definitions. A float product with an ``int_twin`` is what insert_quant
lowers to exact integer arithmetic in rct mode (and what insert_fake_quant fake-quantises in
qat mode, when it is a forward op); ``FUSABLE_WEIGHT_GRAD`` marks the integer products
fuse_updates may fold into a parameter update.
"""

from __future__ import annotations

import math
from typing import Any

from rctc.ops import costs
from rctc.ops.geometry import conv_transpose_params
from rctc.ops.schema import FUSABLE_WEIGHT_GRAD, GRADIENT, INTEGER, PRODUCT, WEIGHTED, definer

op = definer("products")
_CONV = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "pads": None, "strides": None}

op("Conv", ("X", "W", "B?"), attrs=_CONV, traits={PRODUCT, WEIGHTED}, differentiable=("X", "W", "B"), rct="integer",
   int_twin="IntConv", product_operands=(0, 1), param_slots=(1, 2), cost=costs.product("Conv", 0, 1, False),
   doc="N-D convolution (groups, dilation, auto_pad)")
op("Gemm", ("A", "B", "C?"), attrs={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}, traits={PRODUCT, WEIGHTED},
   differentiable=("A", "B", "C"), rct="integer", int_twin="IntGemm", product_operands=(0, 1),
   param_slots=(0, 1, 2), cost=costs.product("Gemm", 0, 1, False))
op("MatMul", ("A", "B"), traits={PRODUCT, WEIGHTED}, differentiable=("A", "B"), rct="integer", int_twin="IntMatMul",
   product_operands=(0, 1), param_slots=(0, 1), cost=costs.product("MatMul", 0, 1, False))
op("ConvGradInput", ("dY", "W"), outputs=("dX",), domain="rctc", attrs=_CONV, traits={PRODUCT, GRADIENT},
   rct="integer", int_twin="IntConvGradInput", product_operands=(0, 1),
   cost=costs.product("ConvGradInput", 0, 1, False), doc="data gradient of Conv")
op("ConvGradWeight", ("dY", "X"), outputs=("dW",), domain="rctc", attrs=_CONV, traits={PRODUCT, GRADIENT},
   rct="integer", int_twin="IntConvGradWeight", product_operands=(0, 1),
   cost=costs.product("ConvGradWeight", 0, 1, False), doc="weight gradient of Conv")

_INT = {"modes": {"rct"}, "rct": "integer", "domain": "rctc"}
_INT_IO = {"outputs": ("acc", "acc_e")}
op("IntConv", ("qX", "eX", "qW", "eW"), **_INT, **_INT_IO, attrs=_CONV, traits={PRODUCT, INTEGER},
   product_operands=(0, 2), cost=costs.product("Conv", 0, 2, True), c_kernel="rctc_im2col_s8 + rctc_gemm",
   doc="exact integer Conv accumulator")
op("IntConvGradInput", ("qdY", "edY", "qW", "eW"), **_INT, **_INT_IO, attrs=_CONV,
   traits={PRODUCT, INTEGER, GRADIENT}, product_operands=(0, 2), cost=costs.product("ConvGradInput", 0, 2, True),
   c_kernel="rctc_gemm + rctc_col2im")
op("IntConvGradWeight", ("qdY", "edY", "qX", "eX"), **_INT, **_INT_IO, attrs=_CONV,
   traits={PRODUCT, INTEGER, GRADIENT, FUSABLE_WEIGHT_GRAD}, product_operands=(0, 2),
   cost=costs.product("ConvGradWeight", 0, 2, True), c_kernel="rctc_im2col_s8 + rctc_gemm")
op("IntGemm", ("qA", "eA", "qB", "eB"), **_INT, **_INT_IO, attrs={"transA": 0, "transB": 0},
   traits={PRODUCT, INTEGER, FUSABLE_WEIGHT_GRAD}, product_operands=(0, 2), cost=costs.product("Gemm", 0, 2, True),
   c_kernel="rctc_gemm")
op("IntMatMul", ("qA", "eA", "qB", "eB"), **_INT, **_INT_IO, traits={PRODUCT, INTEGER, FUSABLE_WEIGHT_GRAD},
   product_operands=(0, 2), cost=costs.product("MatMul", 0, 2, True), c_kernel="rctc_gemm")


# ----------------------------------------------------------------------------- ConvTranspose
# A float island in rct mode (and not fake-quantised in qat mode): its products are those of
# Conv's data gradient, but the integer product machinery (IntConv*, fuse_updates) is keyed by
# Conv's operand roles; until it learns the transposed roles the op runs in float32.
_CONVT = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "output_padding": None,
          "output_shape": None, "pads": None, "strides": None}
_CONVT_GRAD = {"kernel_shape": None, "strides": None, "pads": None, "dilations": None, "group": 1}


def _convt_macs(x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> int:
    """x (N, C, in...) with W (C, M/g, k...): every input element meets M/g * prod(k) weights."""
    return math.prod(x_shape) * math.prod(w_shape[1:])


def _float_macs(ins: Any, outs: Any, counts: Any, macs: int) -> None:
    floats = [o.bits for o in list(ins) + list(outs) if o is not None and o.is_float]
    w = max(floats) if floats else 32
    counts.add_macs(f"fp{w}*fp{w}+fp{w}", macs)


def _convt_cost(node: Any, ins: Any, outs: Any, counts: Any, fq: Any = None) -> None:
    _float_macs(ins, outs, counts, _convt_macs(ins[0].shape, ins[1].shape))
    if len(ins) > 2 and ins[2] is not None:
        counts.add_op("add", outs[0].width, outs[0].size)


def _convt_grad_input_cost(node: Any, ins: Any, outs: Any, counts: Any, fq: Any = None) -> None:
    _float_macs(ins, outs, counts, _convt_macs(outs[0].shape, ins[1].shape))  # (dY, W) -> dX


def _convt_grad_weight_cost(node: Any, ins: Any, outs: Any, counts: Any, fq: Any = None) -> None:
    _float_macs(ins, outs, counts, _convt_macs(ins[1].shape, outs[0].shape))  # (dY, X) -> dW


def _convt_grad(b: Any, node: Any, dys: list[Any]) -> list[Any]:
    """y = ConvTranspose(x, W) + B is Conv's data gradient: dx = Conv(dy, W) with the same window,
    dW = Conv's weight gradient with the roles of x and dy swapped, dB = the sum of dy over all
    but the channel axis (ConvGradBias)."""
    dy = dys[0]
    x, w, bias = node.input(0), node.input(1), node.input(2)
    grads: list[Any] = [None] * len(node.inputs)
    if dy is None:
        return grads
    kernel, strides, dilations, pads, _ = conv_transpose_params(node.attrs, x.shape, w.shape)
    win = {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dilations,
           "group": int(node.attrs.get("group", 1))}
    if b.wants(x):
        grads[0] = b.like("ConvTransposeGradInput", [dy, w], x, win)
    if b.wants(w):
        grads[1] = b.like("ConvTransposeGradWeight", [dy, x], w, win)
    if bias is not None and b.wants(bias):
        grads[2] = b.like("ConvGradBias", [dy], bias)
    return grads


op("ConvTranspose", ("X", "W", "B?"), attrs=_CONVT, traits={WEIGHTED}, differentiable=("X", "W", "B"),
   param_slots=(1, 2), grad=_convt_grad, cost=_convt_cost,
   doc="N-D transposed convolution (groups, stride, pads, output_padding, dilation, auto_pad); float island in rct")
op("ConvTransposeGradInput", ("dY", "W"), outputs=("dX",), domain="rctc", attrs=_CONVT_GRAD, traits={GRADIENT},
   cost=_convt_grad_input_cost, doc="data gradient of ConvTranspose: Conv(dY, W) with its window")
op("ConvTransposeGradWeight", ("dY", "X"), outputs=("dW",), domain="rctc", attrs=_CONVT_GRAD, traits={GRADIENT},
   cost=_convt_grad_weight_cost, doc="weight gradient of ConvTranspose")

"""Products: Conv, Gemm, MatMul, the convolution gradients and their integer twins.

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the GEMM-class definitions. A float product with an ``int_twin`` is what insert_quant
lowers to exact integer arithmetic in rct mode (and what insert_fake_quant fake-quantises in
qat mode, when it is a forward op); ``FUSABLE_WEIGHT_GRAD`` marks the integer products
fuse_updates may fold into a parameter update.
"""

from __future__ import annotations

from rctc.ops import costs
from rctc.ops.schema import FUSABLE_WEIGHT_GRAD, GRADIENT, INTEGER, PRODUCT, definer

op = definer("products")
_CONV = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "pads": None, "strides": None}

op("Conv", ("X", "W", "B?"), attrs=_CONV, traits={PRODUCT}, differentiable=("X", "W", "B"), rct="integer",
   int_twin="IntConv", product_operands=(0, 1), param_slots=(1, 2), cost=costs.product("Conv", 0, 1, False),
   doc="N-D convolution (groups, dilation, auto_pad)")
op("Gemm", ("A", "B", "C?"), attrs={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}, traits={PRODUCT},
   differentiable=("A", "B", "C"), rct="integer", int_twin="IntGemm", product_operands=(0, 1),
   param_slots=(0, 1, 2), cost=costs.product("Gemm", 0, 1, False))
op("MatMul", ("A", "B"), traits={PRODUCT}, differentiable=("A", "B"), rct="integer", int_twin="IntMatMul",
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
   product_operands=(0, 2), cost=costs.product("Conv", 0, 2, True), doc="exact integer Conv accumulator")
op("IntConvGradInput", ("qdY", "edY", "qW", "eW"), **_INT, **_INT_IO, attrs=_CONV,
   traits={PRODUCT, INTEGER, GRADIENT}, product_operands=(0, 2), cost=costs.product("ConvGradInput", 0, 2, True))
op("IntConvGradWeight", ("qdY", "edY", "qX", "eX"), **_INT, **_INT_IO, attrs=_CONV,
   traits={PRODUCT, INTEGER, GRADIENT, FUSABLE_WEIGHT_GRAD}, product_operands=(0, 2),
   cost=costs.product("ConvGradWeight", 0, 2, True))
op("IntGemm", ("qA", "eA", "qB", "eB"), **_INT, **_INT_IO, attrs={"transA": 0, "transB": 0},
   traits={PRODUCT, INTEGER, FUSABLE_WEIGHT_GRAD}, product_operands=(0, 2), cost=costs.product("Gemm", 0, 2, True))
op("IntMatMul", ("qA", "eA", "qB", "eB"), **_INT, **_INT_IO, traits={PRODUCT, INTEGER, FUSABLE_WEIGHT_GRAD},
   product_operands=(0, 2), cost=costs.product("MatMul", 0, 2, True))

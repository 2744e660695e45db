"""Integer GEMM-class kernels (rct mode): IntConv, IntGemm, IntMatMul, IntConvGradInput, IntConvGradWeight.

Each multiplies integer operands exactly (``rctc.runtime.intmath.int_matmul``: BLAS with the
contraction split so every partial sum is exact) and returns the accumulator in the node's
output dtype (int32 or int64, chosen at compile time from the worst-case bound) plus its
exponent ``ea + eb``. ``INT_PRODUCTS`` maps the op type to the bare product, which
FusedIntUpdate reuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rctc.ir import Node
from rctc.runtime.intmath import int_matmul
from rctc.runtime.kernels._im2col import im2col, pad_spatial, window_params
from rctc.runtime.kernels.grad_linear import _window_attrs, conv_grad_input, conv_grad_weight
from rctc.runtime.kernels.registry import KernelContext, register

Product = Callable[[np.ndarray, np.ndarray, dict[str, Any]], np.ndarray]


def int_conv(x: np.ndarray, w: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    n, c = x.shape[:2]
    m = w.shape[0]
    group = int(attrs.get("group", 1))
    kernel = [int(v) for v in attrs.get("kernel_shape", w.shape[2:])]
    strides, dilations, pads, outs = window_params(attrs, x.shape, kernel)
    cols = im2col(pad_spatial(x, pads), kernel, strides, dilations, outs)  # (N, C*K, P)
    p = cols.shape[-1]
    if group == 1:
        y = int_matmul(w.reshape(m, -1), cols)
    else:
        kg = (c // group) * math.prod(kernel)
        y = int_matmul(w.reshape(group, m // group, kg), cols.reshape(n, group, kg, p))
    return y.reshape((n, m) + tuple(outs))


def int_gemm(a: np.ndarray, b: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    if attrs.get("transA", 0):
        a = a.T
    if attrs.get("transB", 0):
        b = b.T
    return int_matmul(a, b)


def int_matmul_op(a: np.ndarray, b: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    return int_matmul(a, b)


def int_conv_grad_input(dy: np.ndarray, w: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    kernel, strides, dilations, pads, group = _window_attrs(attrs, dy.ndim - 2)
    x_shape = [int(v) for v in attrs["input_shape"]]
    return conv_grad_input(dy, w, x_shape, kernel, strides, dilations, pads, group, matmul=int_matmul)


def int_conv_grad_weight(dy: np.ndarray, x: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    kernel, strides, dilations, pads, group = _window_attrs(attrs, dy.ndim - 2)
    return conv_grad_weight(dy, x, kernel, strides, dilations, pads, group, matmul=int_matmul)


INT_PRODUCTS: dict[str, Product] = {
    "IntConv": int_conv,
    "IntGemm": int_gemm,
    "IntMatMul": int_matmul_op,
    "IntConvGradInput": int_conv_grad_input,
    "IntConvGradWeight": int_conv_grad_weight,
}


def _make_kernel(product: Product) -> Callable[..., tuple]:
    def kernel(ctx: KernelContext, node: Node, qa: np.ndarray, ea: np.ndarray, qb: np.ndarray,
               eb: np.ndarray) -> tuple:
        acc = product(qa, qb, node.attrs)
        return acc.astype(node.outputs[0].dtype, copy=False), np.array(int(ea) + int(eb), np.int32)

    kernel.__doc__ = f"{product.__name__}: exact integer product and its exponent."
    return kernel


for _op, _fn in INT_PRODUCTS.items():
    register(_op)(_make_kernel(_fn))

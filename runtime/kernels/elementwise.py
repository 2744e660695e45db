"""Element-wise forward kernels: arithmetic with numpy broadcasting, activations, Cast, Dropout.

Float32 inputs give float32 outputs (Python scalars are "weak" in numpy >= 2, and attribute
scalars are converted to the input dtype explicitly), integer ops keep their integer dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register

# ONNX TensorProto.DataType -> numpy dtype (the types the runtime handles)
ONNX_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 4: np.dtype(np.uint16),
    5: np.dtype(np.int16), 6: np.dtype(np.int32), 7: np.dtype(np.int64), 9: np.dtype(np.bool_),
    10: np.dtype(np.float16), 11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
}


def _scalar(v: Any, dtype: np.dtype) -> np.ndarray:
    return np.asarray(v, dtype=dtype)


@register("Add")
def add(ctx: KernelContext, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.add(a, b)


@register("Sub")
def sub(ctx: KernelContext, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.subtract(a, b)


@register("Mul")
def mul(ctx: KernelContext, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.multiply(a, b)


@register("Div")
def div(ctx: KernelContext, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Float division; integer division truncates toward zero (C semantics, as onnxruntime)."""
    if np.issubdtype(a.dtype, np.integer):
        return (np.subtract(a, np.fmod(a, b)) // b).astype(np.result_type(a, b), copy=False)
    return np.divide(a, b)


@register("Pow")
def pow_(ctx: KernelContext, node: Node, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """X ** Y; the output has X's dtype (ONNX), computed in X's float type when X is float."""
    if np.issubdtype(x.dtype, np.floating):
        return np.power(x, y.astype(x.dtype, copy=False))
    if np.issubdtype(y.dtype, np.integer):
        return np.power(x, y.astype(x.dtype, copy=False))
    return np.power(x.astype(np.float64), y).astype(x.dtype)


_CONSTS: dict[tuple[float, np.dtype], np.ndarray] = {}


def const(v: float, dtype: np.dtype) -> np.ndarray:
    """A shared 0-d constant of ``dtype`` (callers never write it): no allocation per kernel call."""
    c = _CONSTS.get((v, dtype))
    if c is None:
        c = _CONSTS[(v, dtype)] = np.asarray(v, dtype=dtype)
    return c


#: Below this many elements ``np.maximum`` beats the one-pass clip (whose Python layer dominates).
_SMALL = 4096


@register("Relu")
def relu(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """max(x, 0); floats via the faster one-pass clip to [+0, inf] (+0 added: see :func:`clip`),
    small ones via ``np.maximum`` (+0 added as well, so both give +0 for -0 and keep NaN)."""
    zero = const(0, x.dtype)
    if x.dtype.kind != "f":
        return np.maximum(x, zero)
    y = np.maximum(x, zero) if x.size < _SMALL else np.clip(x, zero, const(np.inf, x.dtype))
    y += zero
    return y


@register("LeakyRelu")
def leaky_relu(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    alpha = _scalar(node.attrs.get("alpha", 0.01), x.dtype)
    return np.where(x >= 0, x, x * alpha)


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), numerically stable: exp of a non-positive number only, one exp per element."""
    e = np.exp(-np.abs(x))
    one = _scalar(1, x.dtype)
    return np.where(x >= 0, one, e) / (one + e)


@register("Sigmoid")
def sigmoid(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    return stable_sigmoid(x)


#: unary ops that are one numpy ufunc
UFUNCS: dict[str, np.ufunc] = {
    "Tanh": np.tanh, "Sqrt": np.sqrt, "Exp": np.exp, "Neg": np.negative, "Log": np.log, "Abs": np.abs,
    "Reciprocal": np.reciprocal,
}


def _ufunc_kernel(fn: np.ufunc) -> Any:
    def kernel(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
        return fn(x)

    kernel.__doc__ = f"numpy.{fn.__name__} of the input."
    return kernel


for _op, _fn in UFUNCS.items():
    register(_op)(_ufunc_kernel(_fn))


@register("Clip")
def clip(
    ctx: KernelContext, node: Node, x: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None
) -> np.ndarray:
    """min/max from optional inputs (opset >= 11) or attributes (opset 6); min > max gives max."""
    if lo is None and "min" in node.attrs:
        lo = _scalar(node.attrs["min"], x.dtype)
    if hi is None and "max" in node.attrs:
        hi = _scalar(node.attrs["max"], x.dtype)
    if lo is not None and hi is not None and x.dtype.kind == "f":
        lo_, hi_ = np.asarray(lo).astype(x.dtype, copy=False), np.asarray(hi).astype(x.dtype, copy=False)
        if lo_.ndim == 0 and hi_.ndim == 0 and lo_ >= 0 and not np.signbit(lo_) and hi_ > 0:
            # one pass: np.clip is min(max(x, lo), hi) per element, NaN propagating, but may keep
            # -0.0 where max(-0.0, +0.0) gives +0.0. With lo >= +0 and hi > 0 every zero of the
            # two-pass result is +0, so adding +0 (which changes nothing else, NaN payloads
            # included) makes the results identical bit for bit.
            y = np.clip(x, lo_, hi_)
            y += np.zeros((), y.dtype)
            return y
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo).astype(x.dtype, copy=False))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi).astype(x.dtype, copy=False))
    return y.copy() if y is x else y


@register("Sum")
def sum_(ctx: KernelContext, node: Node, *xs: np.ndarray) -> np.ndarray:
    """Variadic broadcasting sum (one new array, accumulated in place)."""
    if not xs:
        raise ValueError("Sum needs at least one input")
    if len(xs) == 1:
        return xs[0].copy()
    shape = np.broadcast_shapes(*(x.shape for x in xs))
    out = np.add(xs[0], xs[1])
    if out.shape != shape:
        out = np.broadcast_to(out, shape).copy()
    for x in xs[2:]:
        np.add(out, x, out=out)
    return out


@register("Identity")
def identity(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    return x


@register("Cast")
def cast(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """``to`` is an ONNX TensorProto type number (or a numpy dtype / name); float->int truncates."""
    to = node.attrs["to"]
    if isinstance(to, (int, np.integer)) and not isinstance(to, bool):
        if int(to) not in ONNX_DTYPES:
            raise ValueError(f"Cast to ONNX type {int(to)} is not supported by the numpy runtime")
        dtype = ONNX_DTYPES[int(to)]
    else:
        dtype = np.dtype(to.decode() if isinstance(to, bytes) else to)
    return x.astype(dtype)


def _flag(v: np.ndarray | None) -> bool:
    return v is not None and bool(np.asarray(v).reshape(-1)[0])


@register("Dropout")
def dropout(
    ctx: KernelContext,
    node: Node,
    x: np.ndarray,
    ratio: np.ndarray | None = None,
    training_mode: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Inference: identity (+ all-true mask). Training (``ctx.training`` or ``training_mode`` input
    true): inverted dropout, kept values scaled by 1/(1-ratio). Element ``i`` is kept when word
    ``i`` of the node's stream (``ctx.words``) is at least ``ceil(ratio * 2^32)``: ``U >= ratio`` for
    ``U = word / 2^32`` on the 2^-32 grid, exactly (``ratio * 2^32`` is exact in float64)."""
    want_mask = len(node.outputs) > 1
    r = float(np.asarray(ratio).reshape(-1)[0]) if ratio is not None else float(node.attrs.get("ratio", 0.5))
    if not (ctx.training or _flag(training_mode)) or r == 0.0:
        return (x, np.ones(x.shape, dtype=bool)) if want_mask else x
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"Dropout ratio {r} outside [0, 1]")
    mask = ctx.words(node, x.shape) >= np.uint64(math.ceil(r * 2.0**32))
    if r >= 1.0:
        y = np.zeros_like(x)
    else:
        y = x * mask
        y *= _scalar(1.0 / (1.0 - r), x.dtype)
    return (y, mask) if want_mask else y

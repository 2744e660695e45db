"""Kernels of the integer smooth activations, Sub / Neg, the recurrent-cell data movement and
the Pad / nearest Resize gradients
(rctc/ops/integer_pointwise.py).

Needs: rctc.runtime.intref (every algorithm is written once there; these kernels unpack
attributes and call it) and ``_words.rand_words`` for the random words of stochastic roundings.
Leaves: one kernel per op type; exponents as int32 scalars, results in the storage of ``bits``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rctc.ir import Node
from rctc.runtime.intref import arith, expo, gelu, instnorm, pointwise
from rctc.runtime.intref.core import requantize
from rctc.runtime.kernels import resample
from rctc.runtime.kernels._words import lazy_words, rand_words
from rctc.runtime.kernels.registry import KernelContext, register


def _e(x: int) -> np.ndarray:
    return np.array(int(x), np.int32)


def _out(t: tuple[np.ndarray, int]) -> tuple[np.ndarray, np.ndarray]:
    return t[0], _e(t[1])


@register("IntSigmoid")
def int_sigmoid(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
    return _out(expo.sigmoid(q, int(e), int(node.attrs["bits"])))


@register("IntSigmoidGrad")
def int_sigmoid_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, q: np.ndarray,
                     e: np.ndarray) -> tuple:
    return _out(expo.sigmoid_backward(q, int(e), dq, int(de), int(node.attrs["bits"]),
                                      rand_words(ctx, node, q.shape)))


@register("IntTanh")
def int_tanh(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
    return _out(expo.tanh(q, int(e), int(node.attrs["bits"])))


@register("IntTanhGrad")
def int_tanh_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, q: np.ndarray,
                  e: np.ndarray) -> tuple:
    return _out(expo.tanh_backward(q, int(e), dq, int(de), int(node.attrs["bits"]), rand_words(ctx, node, q.shape)))


@register("IntSub")
def int_sub(ctx: KernelContext, node: Node, qa: np.ndarray, ea: np.ndarray, qb: np.ndarray, eb: np.ndarray) -> tuple:
    shape = np.broadcast_shapes(qa.shape, qb.shape)
    return _out(arith.sub(qa, int(ea), qb, int(eb), int(node.attrs["bits"]), lazy_words(ctx, node, shape)))


@register("IntNeg")
def int_neg(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
    """``-q``: exact (the symmetric range has no ``-2^(bits-1)``)."""
    return np.negative(q), _e(int(e))


@register("IntConcat")
def int_concat(ctx: KernelContext, node: Node, *pairs: np.ndarray) -> tuple:
    ts = [(pairs[i], int(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    return _out(arith.concat(ts, int(node.attrs["axis"]) % pairs[0].ndim, int(node.attrs["bits"])))


@register("IntConcatGrad")
def int_concat_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray) -> tuple:
    """The pieces ``select`` of ``dy`` split by ``split`` along ``axis`` (intref.arith.concat_backward)."""
    axis = int(node.attrs["axis"]) % dq.ndim
    split = [int(s) for s in node.attrs["split"]]
    if sum(split) != dq.shape[axis]:
        raise ValueError(f"IntConcatGrad split {split} does not add up to dim {dq.shape[axis]} of axis {axis}")
    pieces = arith.concat_backward(dq, int(de), split, axis)
    out: list[np.ndarray] = []
    for i in node.attrs["select"]:
        p, pe = pieces[int(i)]
        out += [np.ascontiguousarray(p), _e(pe)]
    return tuple(out)


def scatter_add(dq: np.ndarray, indices: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Exact int64 scatter-add of Gather's error ``dq`` into ``shape`` along ``axis`` (negative
    indices count from the end; one out of range raises IndexError)."""
    n = shape[axis]
    idx = np.asarray(indices).astype(np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"GatherGrad indices out of range [-{n}, {n - 1}]")
    idx = np.where(idx < 0, idx + n, idx)
    pre, post = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    acc = np.zeros((pre, n, post), np.int64)
    rows = dq.astype(np.int64).reshape(pre, idx.size, post)
    for j, k in enumerate(idx.tolist()):  # in index order: the sum is exact, so any order gives these bits
        acc[:, k, :] += rows[:, j, :]
    return acc.reshape(shape)


@register("IntGatherScatter")
def int_gather_scatter(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, indices: np.ndarray) -> tuple:
    shape = tuple(int(s) for s in node.attrs["table_shape"])
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    acc = scatter_add(dq, indices, shape, axis)
    return _out(requantize(acc, int(de), int(node.attrs["bits"]), rand=rand_words(ctx, node, shape)))


@register("IntPadGrad")
def int_pad_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray) -> tuple:
    """PadGrad's scatter (runtime/kernels/resample.py) on int64: an exact sum, then one rounding."""
    acc = resample.pad_grad(ctx, node, dq.astype(np.int64))
    return _out(requantize(acc, int(de), int(node.attrs["bits"]), rand=rand_words(ctx, node, acc.shape)))


@register("IntResizeGrad")
def int_resize_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray) -> tuple:
    """Nearest ResizeGrad's scatter on int64 (every tap weighs 1: exact), then one rounding."""
    if str(node.attrs.get("mode", "nearest")) != "nearest":
        raise ValueError("IntResizeGrad: only nearest Resize has an exact integer gradient")
    acc = resample.resize_grad(ctx, node, dq.astype(np.int64))
    if acc.dtype != np.int64:
        raise AssertionError("nearest taps keep the integers")
    return _out(requantize(acc, int(de), int(node.attrs["bits"]), rand=rand_words(ctx, node, acc.shape)))


@register("IntInstanceNormalization")
def int_instance_norm(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, gq: np.ndarray, ge: np.ndarray,
                      bq: np.ndarray, be: np.ndarray) -> tuple:
    return _out(instnorm.instancenorm(q, int(e), (gq, int(ge)), (bq, int(be)), float(node.attrs.get("epsilon", 1e-5)),
                                      int(node.attrs["bits"])))


@register("IntInstanceNormGrad")
def int_instance_norm_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, q: np.ndarray,
                           e: np.ndarray, gq: np.ndarray, ge: np.ndarray) -> tuple:
    dx, dg, db = instnorm.instancenorm_backward(q, int(e), (gq, int(ge)), dq, int(de),
                                                float(node.attrs.get("epsilon", 1e-5)), int(node.attrs["bits"]),
                                                rand_words(ctx, node, q.shape))
    return dx[0], _e(dx[1]), dg[0], _e(dg[1]), db[0], _e(db[1])


def _alpha_beta(node: Node) -> dict[str, float]:
    return {k: float(node.attrs[k]) for k in ("alpha", "beta") if k in node.attrs}


_UNARY = {"IntLeakyRelu": (pointwise.leaky_relu, pointwise.leaky_relu_backward),
          "IntHardSigmoid": (pointwise.hardsigmoid, pointwise.hardsigmoid_backward),
          "IntHardSwish": (pointwise.hardswish, pointwise.hardswish_backward),
          "IntErf": (gelu.erf, gelu.erf_backward),
          "IntExp": (expo.exp, expo.exp_backward)}


def _unary(fwd: Any, bwd: Any) -> tuple[Any, Any]:
    def forward(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
        return _out(fwd(q, int(e), **_alpha_beta(node), bits=int(node.attrs["bits"])))

    def backward(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, q: np.ndarray,
                 e: np.ndarray) -> tuple:
        return _out(bwd(q, int(e), dq, int(de), **_alpha_beta(node), bits=int(node.attrs["bits"]),
                        rand=rand_words(ctx, node, q.shape)))
    return forward, backward


for _t, (_f, _b) in _UNARY.items():
    _kf, _kb = _unary(_f, _b)
    register(_t)(_kf)
    register(f"{_t}Grad")(_kb)

"""Kernels of the integer element-wise, pooling and loss ops (rctc/ops/integer.py).

Needs: rctc.runtime.intref (every algorithm is written once there, with its rounding and error
bound; these kernels only unpack attributes and call it) and ``_words.rand_words`` for the
random words of stochastic roundings.
Leaves: one kernel per op type. Exponents travel as int32 scalars; integer outputs are in the
storage dtype of their ``bits`` (int8 at the default 8), accumulators int64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rctc.ir import Node
from rctc.runtime.intref import arith, expo, norm, pointwise, pool
from rctc.runtime.intref.core import requantize
from rctc.runtime.kernels._words import lazy_words, rand_words
from rctc.runtime.kernels.registry import KernelContext, register
from rctc.runtime.kernels.shape_ops import gather_indices


def _e(x: int) -> np.ndarray:
    return np.array(int(x), np.int32)


def _out(t: tuple[np.ndarray, int]) -> tuple[np.ndarray, np.ndarray]:
    return t[0], _e(t[1])


@register("Requantize")
def requantize_kernel(ctx: KernelContext, node: Node, acc: np.ndarray, acc_e: np.ndarray,
                      bias: np.ndarray | None = None, bias_e: np.ndarray | None = None) -> tuple:
    """``acc * 2^acc_e`` (+ bias, broadcast along ``bias_axis``) to ``bits`` (intref.core.requantize)."""
    b = None
    if bias is not None:
        b = bias
        if int(node.attrs.get("bias_axis", -1)) == 1 and b.ndim == 1:
            b = b.reshape((1, -1) + (1,) * (acc.ndim - 2))
    rand = rand_words(ctx, node, acc.shape)
    return _out(requantize(acc, int(acc_e), int(node.attrs["bits"]), bias=b,
                           bias_exp=None if bias_e is None else int(bias_e), rand=rand))


@register("IntRelu")
def int_relu(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
    return _out(pointwise.relu(q, int(e)))


@register("IntReluGrad")
def int_relu_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, q: np.ndarray,
                  e: np.ndarray) -> tuple:
    return _out(pointwise.relu_backward(q, int(e), dq, int(de)))


def _binary(algorithm: Any) -> Any:
    """IntAdd / IntMul: ``algorithm(qa, ea, qb, eb, bits, rand)`` on the broadcast shape."""
    def kernel(ctx: KernelContext, node: Node, qa: np.ndarray, ea: np.ndarray, qb: np.ndarray, eb: np.ndarray
               ) -> tuple:
        shape = np.broadcast_shapes(qa.shape, qb.shape)
        return _out(algorithm(qa, int(ea), qb, int(eb), int(node.attrs["bits"]), lazy_words(ctx, node, shape)))
    return kernel


int_add = register("IntAdd")(_binary(arith.add))
int_mul = register("IntMul")(_binary(arith.mul))


@register("IntAddGrad")
def int_add_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray) -> tuple:
    shape = tuple(int(s) for s in node.attrs["shape"])
    acc = arith.reduce_to(dq, shape)
    return _out(requantize(acc, int(de), int(node.attrs["bits"]), rand=lazy_words(ctx, node, shape)))


@register("IntReduceSum")
def int_reduce_sum(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray) -> tuple:
    """Exact int64 sum over ``axes``, reshaped to ``shape`` (the accumulator keeps the error's exponent)."""
    axes = tuple(int(a) for a in node.attrs["axes"])
    shape = tuple(int(s) for s in node.attrs["shape"])
    dq = np.asarray(dq)
    # int32 sums where every partial sum provably fits (8 / 16-bit errors, n 2^(8w-1) < 2^31)
    narrow = dq.dtype.kind == "i" and dq.dtype.itemsize <= 2 and dq.size << (8 * dq.dtype.itemsize - 1) < 1 << 31
    acc = dq.sum(axis=axes, dtype=np.int32 if narrow else np.int64)
    return acc.astype(np.int64, copy=False).reshape(shape), _e(int(de))


def _pool2d(node: Node) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    k = tuple(int(v) for v in node.attrs["kernel_shape"])
    s = tuple(int(v) for v in (node.attrs.get("strides") or (1, 1)))
    p = tuple(int(v) for v in (node.attrs.get("pads") or (0, 0, 0, 0)))
    return (k[0], k[1]), (s[0], s[1]), (p[0], p[1], p[2], p[3])


@register("IntMaxPool")
def int_max_pool(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
    k, s, p = _pool2d(node)
    return _out(pool.maxpool2d(q, int(e), k, s, p))


@register("IntMaxPoolGrad")
def int_max_pool_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, q: np.ndarray,
                      e: np.ndarray) -> tuple:
    k, s, p = _pool2d(node)
    return _out(pool.maxpool2d_backward(q, int(e), dq, int(de), k, s, p, int(node.attrs["bits"]),
                                        lazy_words(ctx, node, q.shape)))


@register("IntGlobalAveragePool")
def int_global_average_pool(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
    return _out(pool.global_avgpool(q, int(e), int(node.attrs["bits"])))


@register("IntGlobalAveragePoolGrad")
def int_global_average_pool_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray) -> tuple:
    shape = tuple(int(v) for v in node.attrs["input_shape"])
    return _out(pool.global_avgpool_backward(dq, int(de), shape, int(node.attrs["bits"]),
                                             rand_words(ctx, node, shape)))


def _kept(mask: np.ndarray) -> np.ndarray | None:
    """The rows that count (None when all do): the uint8 0 / 1 ``sample_mask`` of an integer graph
    (a float32 0 / 1 mask of a graph saved before it was uint8 reads the same); other values are refused."""
    m = np.asarray(mask).reshape(-1)
    if not np.all((m == 0) | (m == 1)):
        raise ValueError("integer cross-entropy needs a 0/1 sample mask")
    return None if bool(m.all()) else m != 0


def _softmax_parts(ctx: KernelContext, q: np.ndarray, e: int, keep: np.ndarray | None, rows: np.ndarray) -> tuple:
    """The loss node's :func:`expo.softmax_parts` of these very logits (same array, exponent and
    kept rows) when it ran in this run, else computed here: the integers either way."""
    parts = ctx.take_over("softmax", q, (e, None if keep is None else keep.tobytes()))
    return expo.softmax_parts(rows, e) if parts is None else parts


@register("IntSoftmaxCrossEntropy")
def int_softmax_cross_entropy(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, labels: np.ndarray,
                              mask: np.ndarray) -> tuple:
    """The loss as ``(loss_q, -16)`` (int64 scalar) over the rows the mask keeps; the softmax parts
    are left in the run's scratch for the gradient node of the same logits."""
    keep = _kept(mask)
    lab = np.asarray(labels).reshape(-1)
    rows = q
    if keep is not None:
        if not keep.any():
            return np.array(0, np.int64), _e(-expo.FRAC)
        rows, lab = q[keep], lab[keep]
    if lab.size and (lab.min() < 0 or lab.max() >= q.shape[1]):
        raise ValueError(f"label outside the {q.shape[1]} classes [0, {q.shape[1]})")
    parts = expo.softmax_parts(rows, int(e))
    if ctx.training:  # for the gradient node of these logits
        ctx.hand_on("softmax", q, (int(e), None if keep is None else keep.tobytes()), parts)
    lq, le = expo.softmax_cross_entropy(rows, int(e), lab, parts)
    return np.array(lq, np.int64), _e(le)


@register("IntSoftmaxCrossEntropyGrad")
def int_softmax_cross_entropy_grad(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray,
                                   labels: np.ndarray, mask: np.ndarray) -> tuple:
    """``(softmax - onehot) / B`` at ``bits`` on the kept rows (B = their count), 0 elsewhere."""
    keep = _kept(mask)
    lab = np.asarray(labels).reshape(-1)
    bits = int(node.attrs["bits"])
    if keep is None:
        parts = _softmax_parts(ctx, q, int(e), None, q)
        return _out(expo.softmax_cross_entropy_backward(q, int(e), lab, bits, rand_words(ctx, node, q.shape), parts))
    out = np.zeros(q.shape, np.dtype(np.int8 if bits <= 8 else np.int16))
    if not keep.any():
        return out, _e(0)
    sub = q[keep]
    parts = _softmax_parts(ctx, q, int(e), keep, sub)
    dq, de = expo.softmax_cross_entropy_backward(sub, int(e), lab[keep], bits, rand_words(ctx, node, sub.shape),
                                                 parts)
    out[keep] = dq
    return out, _e(de)


def _bound(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]


@register("IntClip")
def int_clip(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
    return _out(pointwise.clip(q, int(e), _bound(node.attrs.get("min")), _bound(node.attrs.get("max"))))


@register("IntClipGrad")
def int_clip_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, q: np.ndarray,
                  e: np.ndarray) -> tuple:
    return _out(pointwise.clip_backward(q, int(e), dq, int(de), _bound(node.attrs.get("min")),
                                        _bound(node.attrs.get("max"))))


@register("IntBatchNormalization")
def int_batch_norm(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, gq: np.ndarray, ge: np.ndarray,
                   bq: np.ndarray, be: np.ndarray, mq: np.ndarray, me: np.ndarray, vq: np.ndarray,
                   ve: np.ndarray) -> tuple:
    """Training (``ctx.training``): batch statistics, running state updated; otherwise the running
    statistics, the state passed through unchanged."""
    eps, bits = float(node.attrs.get("epsilon", 1e-5)), int(node.attrs["bits"])
    gamma, beta, rm, rv = (gq, int(ge)), (bq, int(be)), (mq, int(me)), (vq, int(ve))
    if not ctx.training:
        y = norm.batchnorm_inference(q, int(e), gamma, beta, rm, rv, eps, bits)
        return y[0], _e(y[1]), mq, me, vq, ve
    saved: dict = {}
    y, nm, nv = norm.batchnorm_train(q, int(e), gamma, beta, rm, rv, eps, float(node.attrs.get("momentum", 0.9)),
                                     bits, saved)
    ctx.hand_on("bn", q, (int(e), eps), saved)  # for the backward of this q (same run)
    return y[0], _e(y[1]), nm[0].astype(mq.dtype), _e(nm[1]), nv[0].astype(vq.dtype), _e(nv[1])


@register("IntBatchNormGrad")
def int_batch_norm_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, q: np.ndarray,
                        e: np.ndarray, gq: np.ndarray, ge: np.ndarray) -> tuple:
    eps = float(node.attrs.get("epsilon", 1e-5))
    # the forward's per-channel statistics (no per-element array), when it normalised this very
    # array at the same exponent and epsilon: the integers batchnorm_backward would recompute
    saved = ctx.take_over("bn", q, (int(e), eps))
    dx, dg, db = norm.batchnorm_backward(q, int(e), (gq, int(ge)), dq, int(de), eps, int(node.attrs["bits"]),
                                         rand_words(ctx, node, q.shape), saved)
    return dx[0], _e(dx[1]), dg[0], _e(dg[1]), db[0], _e(db[1])


@register("IntLayerNormalization")
def int_layer_norm(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, gq: np.ndarray, ge: np.ndarray,
                   bq: np.ndarray, be: np.ndarray) -> tuple:
    axis, eps = int(node.attrs.get("axis", -1)), float(node.attrs.get("epsilon", 1e-5))
    saved: dict | None = {} if ctx.training else None
    y = norm.layernorm(q, int(e), (gq, int(ge)), (bq, int(be)), axis, eps, int(node.attrs["bits"]), saved)
    if saved is not None:  # the per-row statistics, for the backward of this q (same run)
        ctx.hand_on("ln", q, (int(e), eps, axis), saved)
    return _out(y)


@register("IntLayerNormGrad")
def int_layer_norm_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, q: np.ndarray,
                        e: np.ndarray, gq: np.ndarray, ge: np.ndarray) -> tuple:
    axis, eps = int(node.attrs.get("axis", -1)), float(node.attrs.get("epsilon", 1e-5))
    saved = ctx.take_over("ln", q, (int(e), eps, axis))
    dx, dg, db = norm.layernorm_backward(q, int(e), (gq, int(ge)), dq, int(de), axis, eps, int(node.attrs["bits"]),
                                         rand_words(ctx, node, q.shape), saved)
    return dx[0], _e(dx[1]), dg[0], _e(dg[1]), db[0], _e(db[1])


@register("IntSoftmax")
def int_softmax(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
    return _out(expo.softmax(q, int(e), int(node.attrs.get("axis", -1)), int(node.attrs["bits"])))


@register("IntSoftmaxGrad")
def int_softmax_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, qy: np.ndarray,
                     ey: np.ndarray) -> tuple:
    return _out(expo.softmax_backward(qy, int(ey), dq, int(de), int(node.attrs.get("axis", -1)),
                                      int(node.attrs["bits"]), rand_words(ctx, node, qy.shape)))


@register("IntReduceMean")
def int_reduce_mean(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray) -> tuple:
    axes = tuple(int(a) for a in node.attrs["axes"])
    return _out(pool.reduce_mean(q, int(e), axes, bool(node.attrs.get("keepdims", 1)), int(node.attrs["bits"])))


@register("IntReduceMeanGrad")
def int_reduce_mean_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray) -> tuple:
    shape = tuple(int(s) for s in node.attrs["shape"])
    axes = tuple(int(a) % len(shape) for a in node.attrs["axes"])
    return _out(pool.reduce_mean_backward(dq, int(de), shape, axes, bool(node.attrs.get("keepdims", 1)),
                                          int(node.attrs["bits"]), rand_words(ctx, node, shape)))


@register("IntGatherGrad")
def int_gather_grad(ctx: KernelContext, node: Node, dq: np.ndarray, de: np.ndarray, indices: np.ndarray) -> tuple:
    """Exact int64 scatter-add of the error rows into the table (the error's exponent)."""
    shape = tuple(int(s) for s in node.attrs["table_shape"])
    return scatter_add_rows(shape, indices, dq), _e(int(de))


def scatter_add_rows(shape: tuple[int, ...], indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``np.add.at(zeros(shape, int64), indices, rows)`` exactly: row ``k`` of ``rows`` (reshaped to
    ``(-1, *shape[1:])``) added into table row ``indices[k]`` (negative counts from the end, out of
    range raises IndexError). The rows are sorted by index (stable) and each run summed by one
    ``np.add.reduceat`` in int64: integer sums, the same whatever the order."""
    acc = np.zeros(shape, np.int64)
    idx = gather_indices(indices, shape[0], "gather gradient").reshape(-1)
    if not idx.size:
        return acc
    order = np.argsort(idx, kind="stable")
    ordered = idx[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    acc[ordered[starts]] = np.add.reduceat(np.asarray(rows).reshape(-1, *shape[1:])[order], starts, axis=0,
                                           dtype=np.int64)
    return acc

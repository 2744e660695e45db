"""Training kernels (rctc domain): losses and their gradients, broadcast reductions, optimiser updates.

Conventions (inputs; attributes) -> outputs:
  SoftmaxCrossEntropy(logits [N, C], labels int [N], mask [N]) -> loss []
      sum_i mask_i * (logsumexp(z_i) - z_i[y_i]) / max(sum(mask), 1); labels of masked-out samples
      (mask 0) are ignored, the others must lie in [0, C).
  SoftmaxCrossEntropyGrad(dloss, logits, labels, mask) -> dlogits
  MSELoss(pred [N, ...], target, mask [N]) -> loss []
      sum_i mask_i * mean_j (pred_ij - target_ij)^2 / max(sum(mask), 1) (mean over non-batch dims)
  MSELossGrad(dloss, pred, target, mask) -> dpred
  ReduceSumTo(x; shape) -> x summed down to the broadcast-compatible ``shape``
  ReduceSumGrad(dy; shape, axes, keepdims) -> dy broadcast back to ``shape`` (input of a ReduceSum)
  ReduceMeanGrad(dy; shape, axes, keepdims) -> the same divided by the number of reduced elements
  SGDUpdate(w, g, lr; weight_decay) -> w - lr * (g + wd * w)
  MomentumUpdate(w, g, v, lr; momentum, weight_decay) -> (w_new, v_new)
      PyTorch SGD semantics: d = g + wd * w; v_new = momentum * v + d; w_new = w - lr * v_new
      (a zero-initialised v reproduces PyTorch's first step, v = d).

Losses compute in the logits' / predictions' dtype and return it; updates return new arrays of
the parameter's (and velocity's) dtype. No kernel writes into its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register


def sum_to(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Sum ``x`` down to ``shape`` (numpy broadcasting in reverse); a new array unless nothing to sum."""
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"cannot sum shape {x.shape} down to higher-rank shape {shape}")
    axes = list(range(lead))
    for i, d in enumerate(shape):
        xd = x.shape[lead + i]
        if d == 1 and xd != 1:
            axes.append(lead + i)
        elif d != xd:
            raise ValueError(f"shape {shape} is not broadcast-compatible with {x.shape}")
    return np.sum(x, axis=tuple(axes), keepdims=True, dtype=x.dtype).reshape(shape)


@register("ReduceSumTo")
def reduce_sum_to(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    return sum_to(x, node.attrs["shape"])


def _expand_back(node: Node, dy: np.ndarray) -> tuple[np.ndarray, tuple[int, ...], int]:
    shape = tuple(int(d) for d in node.attrs["shape"])
    axes = tuple(int(a) + len(shape) if int(a) < 0 else int(a) for a in node.attrs["axes"])
    if not int(node.attrs.get("keepdims", 1)):
        dy = np.expand_dims(dy, axes)
    count = int(np.prod([shape[a] for a in axes])) if axes else 1
    return dy, shape, count


@register("ReduceSumGrad")
def reduce_sum_grad(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    d, shape, _ = _expand_back(node, dy)
    return np.broadcast_to(d, shape).copy()


@register("ReduceMeanGrad")
def reduce_mean_grad(ctx: KernelContext, node: Node, dy: np.ndarray) -> np.ndarray:
    d, shape, count = _expand_back(node, dy)
    d = d / np.asarray(max(count, 1), dtype=d.dtype)
    return np.broadcast_to(d, shape).copy()


# ----- losses -----------------------------------------------------------------------------------

def _mask_denom(mask: np.ndarray, dt: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mask).astype(dt, copy=False).reshape(-1)
    return m, np.maximum(np.sum(m, dtype=dt), np.asarray(1, dt))


def _checked_labels(labels: np.ndarray, m: np.ndarray, n_classes: int) -> np.ndarray:
    lab = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
    lab = np.where(m != 0, lab, 0)
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        bad = lab[(lab < 0) | (lab >= n_classes)][0]
        raise ValueError(f"label {int(bad)} outside the {n_classes} classes [0, {n_classes})")
    return lab


def _log_softmax(z: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):  # garbage in padded rows is masked out later
        s = z - np.max(z, axis=1, keepdims=True)
        s -= np.log(np.sum(np.exp(s), axis=1, keepdims=True, dtype=s.dtype))
    return s


@register("SoftmaxCrossEntropy")
def softmax_cross_entropy(
    ctx: KernelContext, node: Node, logits: np.ndarray, labels: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    dt = logits.dtype
    m, denom = _mask_denom(mask, dt)
    lab = _checked_labels(labels, m, logits.shape[1])
    logp = _log_softmax(logits)
    nll = -logp[np.arange(logits.shape[0]), lab]
    nll = np.where(m != 0, nll, np.asarray(0, dt))  # padded rows may hold anything, even inf
    return np.asarray(np.sum(m * nll, dtype=dt) / denom, dtype=dt)


@register("SoftmaxCrossEntropyGrad")
def softmax_cross_entropy_grad(
    ctx: KernelContext, node: Node, dloss: np.ndarray, logits: np.ndarray, labels: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    dt = logits.dtype
    m, denom = _mask_denom(mask, dt)
    lab = _checked_labels(labels, m, logits.shape[1])
    p = np.exp(_log_softmax(logits))
    p[np.arange(logits.shape[0]), lab] -= np.asarray(1, dt)
    w = m * (np.asarray(dloss, dt).reshape(()) / denom)
    p *= w[:, None]
    p[m == 0] = 0  # no NaN leaks from padded rows
    return p


def _mse_parts(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    dt = pred.dtype
    m, denom = _mask_denom(mask, dt)
    diff = pred - np.asarray(target).astype(dt, copy=False)
    per_sample = int(np.prod(pred.shape[1:])) if pred.ndim > 1 else 1
    return m, denom, diff, np.asarray(per_sample, dt)


@register("MSELoss")
def mse_loss(ctx: KernelContext, node: Node, pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    dt = pred.dtype
    m, denom, diff, d = _mse_parts(pred, target, mask)
    sq = np.square(diff).reshape(pred.shape[0], -1)
    per = np.sum(sq, axis=1, dtype=dt) / d
    per = np.where(m != 0, per, np.asarray(0, dt))
    return np.asarray(np.sum(m * per, dtype=dt) / denom, dtype=dt)


@register("MSELossGrad")
def mse_loss_grad(
    ctx: KernelContext, node: Node, dloss: np.ndarray, pred: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    dt = pred.dtype
    m, denom, diff, d = _mse_parts(pred, target, mask)
    w = m * (np.asarray(2, dt) * np.asarray(dloss, dt).reshape(()) / (d * denom))
    g = diff * w.reshape((-1,) + (1,) * (pred.ndim - 1))
    g[m == 0] = 0
    return g


# ----- optimiser updates --------------------------------------------------------------------------

def _lr(lr: np.ndarray, dt: np.dtype) -> np.ndarray:
    return np.asarray(lr).astype(dt, copy=False).reshape(())


def _direction(node: Node, w: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g + weight_decay * w in w's dtype (always a new array)."""
    dt = w.dtype
    g = np.asarray(g).astype(dt, copy=False)
    wd = float(node.attrs.get("weight_decay", 0.0))
    if wd:
        return g + np.asarray(wd, dt) * w
    return g.copy()


@register("SGDUpdate")
def sgd_update(ctx: KernelContext, node: Node, w: np.ndarray, g: np.ndarray, lr: np.ndarray) -> np.ndarray:
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"SGDUpdate needs a float parameter, got {w.dtype} (integer parameters use fused updates)")
    d = _direction(node, w, g)
    d *= _lr(lr, w.dtype)
    return w - d


@register("MomentumUpdate")
def momentum_update(
    ctx: KernelContext, node: Node, w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"MomentumUpdate needs a float parameter, got {w.dtype}")
    mu = float(node.attrs.get("momentum", 0.9))
    d = _direction(node, w, g)
    vd = v.dtype
    v_new = v * np.asarray(mu, vd) + d.astype(vd, copy=False)
    w_new = w - _lr(lr, w.dtype) * v_new.astype(w.dtype, copy=False)
    return w_new, v_new

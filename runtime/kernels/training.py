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
  AdamWUpdate(w, g, m, v, t, lr; beta1, beta2, epsilon, weight_decay) -> (w_new, m_new, v_new, t_new)
      torch.optim.AdamW: w *= 1 - lr * wd (decoupled); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
      t += 1; w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). ``t`` is an int64 count.

Losses compute in the logits' / predictions' dtype and return it; updates return new arrays of
the parameter's (and velocity's) dtype. No kernel writes into its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels._im2col import cached_plan
from rctc.runtime.kernels.registry import KernelContext, register


def _sum_plan(x_shape: tuple[int, ...], shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(target shape, axes to sum with keepdims; None when ``x_shape`` already is the target)."""
    shape = tuple(int(d) for d in shape)
    if x_shape == shape:
        return shape, None
    lead = len(x_shape) - len(shape)
    if lead < 0:
        raise ValueError(f"cannot sum shape {x_shape} down to higher-rank shape {shape}")
    axes = list(range(lead))
    for i, d in enumerate(shape):
        xd = x_shape[lead + i]
        if d == 1 and xd != 1:
            axes.append(lead + i)
        elif d != xd:
            raise ValueError(f"shape {shape} is not broadcast-compatible with {x_shape}")
    return shape, tuple(axes)


def _sum_axes(x: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...] | None) -> np.ndarray:
    if axes is None:
        return x
    # np.sum(x, axis=axes, keepdims=True, dtype=x.dtype) without its Python layer
    return np.add.reduce(x, axis=axes, dtype=x.dtype, keepdims=True).reshape(shape)


def sum_to(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Sum ``x`` down to ``shape`` (numpy broadcasting in reverse); a new array unless nothing to sum."""
    return _sum_axes(x, *_sum_plan(x.shape, shape))


@register("ReduceSumTo")
def reduce_sum_to(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    return _sum_axes(x, *cached_plan(node, x.shape, lambda: _sum_plan(x.shape, node.attrs["shape"])))


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
# Losses run once per step on small arrays, so they are written for few numpy calls: reductions
# call the ufunc directly (np.sum / np.max add a Python layer; the same reduction underneath), and
# the masking of padded rows (mask 0) is skipped when every row counts.

_ROWS: dict[int, np.ndarray] = {}  # np.arange(n) for the row index of a gather (read only)


def _rows(n: int) -> np.ndarray:
    r = _ROWS.get(n)
    if r is None:
        r = _ROWS[n] = np.arange(n)
    return r


def _mask_denom(mask: np.ndarray, dt: np.dtype) -> tuple[np.ndarray, np.floating, np.ndarray | None]:
    """(mask in ``dt`` as 1-D, ``max(sum(mask), 1)``, the rows that count (mask != 0), or None when
    all of them do)."""
    m = np.asarray(mask).astype(dt, copy=False).reshape(-1)
    s = np.add.reduce(m, axis=None, dtype=dt)
    denom = dt.type(1) if s < 1 else s  # np.maximum(s, 1), NaN included
    return m, denom, None if np.count_nonzero(m) == m.size else m != 0


def _ce_parts(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> tuple:
    """The shared prologue of the cross-entropy kernels: (mask, denominator, kept rows or None,
    labels as int64 with those of masked-out rows set to 0, all checked to lie in [0, C),
    log-softmax of the logits). The loss and its gradient each compute it from their own inputs."""
    m, denom, keep = _mask_denom(mask, logits.dtype)
    lab = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
    if keep is not None:
        lab = np.where(keep, lab, 0)
    n_classes = logits.shape[1]
    # one reduction checks both ends: a negative label is >= 2^63 as uint64
    if lab.size and int(np.maximum.reduce(lab.view(np.uint64), axis=None)) >= n_classes:
        bad = lab[(lab < 0) | (lab >= n_classes)][0]
        raise ValueError(f"label {int(bad)} outside the {n_classes} classes [0, {n_classes})")
    return m, denom, keep, lab, _log_softmax(logits)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):  # garbage in padded rows is masked out later
        s = z - np.maximum.reduce(z, axis=1, keepdims=True)
        s -= np.log(np.add.reduce(np.exp(s), axis=1, keepdims=True, dtype=s.dtype))
    return s


@register("SoftmaxCrossEntropy")
def softmax_cross_entropy(
    ctx: KernelContext, node: Node, logits: np.ndarray, labels: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    dt = logits.dtype
    m, denom, keep, lab, logp = _ce_parts(logits, labels, mask)
    nll = -logp[_rows(logits.shape[0]), lab]
    if keep is not None:
        nll = np.where(keep, nll, np.asarray(0, dt))  # padded rows may hold anything, even inf
    return np.asarray(np.add.reduce(m * nll, axis=None, dtype=dt) / denom, dtype=dt)


@register("SoftmaxCrossEntropyGrad")
def softmax_cross_entropy_grad(
    ctx: KernelContext, node: Node, dloss: np.ndarray, logits: np.ndarray, labels: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    dt = logits.dtype
    m, denom, keep, lab, logp = _ce_parts(logits, labels, mask)
    p = np.exp(logp)
    p[_rows(logits.shape[0]), lab] -= dt.type(1)
    w = m * (np.asarray(dloss, dt).reshape(()) / denom)
    p *= w[:, None]
    if keep is not None:
        p[m == 0] = 0  # no NaN leaks from padded rows
    return p


def _mse_parts(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple:
    dt = pred.dtype
    m, denom, keep = _mask_denom(mask, dt)
    diff = pred - np.asarray(target).astype(dt, copy=False)
    return m, denom, keep, diff, dt.type(math.prod(pred.shape[1:]))


@register("MSELoss")
def mse_loss(ctx: KernelContext, node: Node, pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    dt = pred.dtype
    m, denom, keep, diff, d = _mse_parts(pred, target, mask)
    sq = np.square(diff).reshape(pred.shape[0], -1)
    per = np.add.reduce(sq, axis=1, dtype=dt) / d
    if keep is not None:
        per = np.where(keep, per, np.asarray(0, dt))
    return np.asarray(np.add.reduce(m * per, axis=None, dtype=dt) / denom, dtype=dt)


@register("MSELossGrad")
def mse_loss_grad(
    ctx: KernelContext, node: Node, dloss: np.ndarray, pred: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    dt = pred.dtype
    m, denom, keep, diff, d = _mse_parts(pred, target, mask)
    w = m * (np.asarray(2, dt) * np.asarray(dloss, dt).reshape(()) / (d * denom))
    g = diff * w.reshape((-1,) + (1,) * (pred.ndim - 1))
    if keep is not None:
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


@register("AdamWUpdate")
def adamw_update(
    ctx: KernelContext, node: Node, w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, t: np.ndarray,
    lr: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"AdamWUpdate needs a float parameter, got {w.dtype}")
    dt = w.dtype
    b1, b2 = float(node.attrs.get("beta1", 0.9)), float(node.attrs.get("beta2", 0.999))
    eps, wd = float(node.attrs.get("epsilon", 1e-8)), float(node.attrs.get("weight_decay", 0.01))
    rate = float(_lr(lr, np.dtype(np.float64)))
    g = np.asarray(g).astype(dt, copy=False)
    step = np.asarray(t, np.int64).reshape(()) + 1
    m_new = m * np.asarray(b1, dt) + g * np.asarray(1.0 - b1, dt)
    v_new = v * np.asarray(b2, dt) + np.square(g) * np.asarray(1.0 - b2, dt)
    step_size = np.asarray(rate / (1.0 - b1 ** int(step)), dt)
    denom = np.sqrt(v_new) / np.asarray(math.sqrt(1.0 - b2 ** int(step)), dt) + np.asarray(eps, dt)
    w_new = w * np.asarray(1.0 - rate * wd, dt) if wd else w.copy()
    w_new -= step_size * m_new / denom
    return w_new, m_new, v_new, step

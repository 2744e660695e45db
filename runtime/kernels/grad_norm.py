"""Backward kernels of normalisation and softmax-family ops (rctc domain).

Conventions (inputs; attributes) -> outputs:
  BatchNormGrad(dy, x, scale, mean?, var?; epsilon, training_mode) -> (dx, dscale, dbias)
      Channel axis 1. Mirrors the BatchNormalization forward kernel: batch statistics (biased
      variance) when ``ctx.training`` or ``training_mode=1`` — the full gradient through the
      mean and variance — otherwise the running ``mean``/``var`` inputs (an affine map).
  LayerNormGrad(dy, x, scale; axis, epsilon) -> (dx, dscale, dbias)
      Normalised over axes [axis, rank); dscale / dbias are summed down to the shapes of the
      node's 2nd / 3rd outputs (the scale and bias shapes).
  LRNGrad(dy, x; size, alpha, beta, bias) -> dx
      With D = bias + alpha/size * S, S the window sum of x^2 (the forward LRN, y = x * D^-beta):
      dx_i = dy_i * D_i^-beta - 2*alpha*beta/size * x_i * sum over the windows containing i of
      dy_c * x_c * D_c^(-beta-1) (the window reflected: channels [i - after, i + before]).
  SoftmaxGrad(dy, y; axis) -> dx          y * (dy - sum(dy * y, axis)), y the forward output
  LogSoftmaxGrad(dy, y; axis) -> dx       dy - exp(y) * sum(dy, axis), y the forward output

All arithmetic runs in the dtype of ``x`` / ``y``; inputs are never modified.
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.norm import chan_dot, chan_sum, channel_window_sum, lrn_denominator_base, lrn_params
from rctc.runtime.kernels.registry import KernelContext, register
from rctc.runtime.kernels.training import sum_to


def _dt(node: Node, i: int, default: np.dtype) -> np.dtype:
    dt = node.outputs[i].dtype if i < len(node.outputs) else None
    return default if dt is None else dt


@register("BatchNormGrad")
def batch_norm_grad(
    ctx: KernelContext,
    node: Node,
    dy: np.ndarray,
    x: np.ndarray,
    scale: np.ndarray,
    mean: np.ndarray | None = None,
    var: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    eps = float(node.attrs.get("epsilon", 1e-5))
    dt = x.dtype
    n, c = x.shape[0], x.shape[1]
    x3 = x.reshape(n, c, math.prod(x.shape[2:]))  # (N, C, spatial): channel reductions over axes 0 and 2
    dy3 = dy.astype(dt, copy=False).reshape(x3.shape)
    a = scale.astype(dt, copy=False)
    training = ctx.training or int(node.attrs.get("training_mode", 0)) == 1
    if training:
        # xhat = (x - mu) * inv;  dx = scale * inv * (dy - mean(dy) - xhat * mean(dy * xhat)),
        # written as four in-place passes over the centred input (the only full-size buffer)
        k = np.asarray(1.0 / max(x3.shape[0] * x3.shape[2], 1), dt)
        bmean = chan_sum(x3) * k
        dx = np.subtract(x3, bmean[:, None])
        inv = np.asarray(1, dt) / np.sqrt(chan_dot(dx, dx) * k + np.asarray(eps, dt))
        dbias = chan_sum(dy3)
        dscale = chan_dot(dy3, dx) * inv
        dx *= (-(dscale * k) * inv)[:, None]
        dx += dy3
        dx -= (dbias * k)[:, None]
        dx *= (a * inv)[:, None]
    else:
        if mean is None or var is None:
            raise ValueError("BatchNormGrad in inference mode needs the running mean and var inputs")
        inv = np.asarray(1, dt) / np.sqrt(var.astype(dt, copy=False) + np.asarray(eps, dt))
        xc = np.subtract(x3, np.asarray(mean).astype(dt, copy=False)[:, None])
        dbias = chan_sum(dy3)
        dscale = chan_dot(dy3, xc) * inv
        dx = np.multiply(dy3, (a * inv)[:, None])
    dx = dx.reshape(x.shape)
    return (
        dx.astype(_dt(node, 0, dt), copy=False),
        dscale.astype(_dt(node, 1, scale.dtype), copy=False),
        dbias.astype(_dt(node, 2, scale.dtype), copy=False),
    )


@register("LayerNormGrad")
def layer_norm_grad(
    ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axis = int(node.attrs.get("axis", -1))
    axis = axis + x.ndim if axis < 0 else axis
    eps = float(node.attrs.get("epsilon", 1e-5))
    dt = x.dtype
    norm_axes = tuple(range(axis, x.ndim))
    lead_axes = tuple(range(axis))
    dy = dy.astype(dt, copy=False)
    mu = x.mean(axis=norm_axes, keepdims=True, dtype=dt)
    xhat = x - mu
    inv = np.asarray(1, dt) / np.sqrt(np.mean(np.square(xhat), axis=norm_axes, keepdims=True, dtype=dt)
                                      + np.asarray(eps, dt))
    xhat *= inv
    dbias = dy.sum(axis=lead_axes, dtype=dt)
    dscale = np.sum(dy * xhat, axis=lead_axes, dtype=dt)
    g = dy * scale.astype(dt, copy=False)
    mg = g.mean(axis=norm_axes, keepdims=True, dtype=dt)
    mgx = np.mean(g * xhat, axis=norm_axes, keepdims=True, dtype=dt)
    g -= mg
    xhat *= mgx
    g -= xhat
    g *= inv
    sshape = tuple(node.outputs[1].shape) if node.outputs[1].shape is not None else scale.shape
    bshape = tuple(node.outputs[2].shape) if node.outputs[2].shape is not None else scale.shape
    return (
        g.astype(_dt(node, 0, dt), copy=False),
        sum_to(dscale, sshape).astype(_dt(node, 1, scale.dtype), copy=False),
        sum_to(dbias, bshape).astype(_dt(node, 2, scale.dtype), copy=False),
    )


@register("LRNGrad")
def lrn_grad(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of LRN w.r.t. its input (the formula in the module docstring)."""
    size, alpha, beta, _, lo = lrn_params(node)
    dt = x.dtype
    dy = dy.astype(dt, copy=False)
    d = lrn_denominator_base(x, node)
    d_beta = np.power(d, np.asarray(-beta, dt))  # D^-beta
    t = dy * x
    t *= d_beta
    t /= d  # dy_c * x_c * D_c^(-beta-1)
    s = channel_window_sum(t, size - 1 - lo, lo)  # windows containing i: the reflected window
    s *= x
    s *= np.asarray(-2.0 * alpha * beta / size, dt)
    s += dy * d_beta
    return s.astype(_dt(node, 0, dt), copy=False)


@register("SoftmaxGrad")
def softmax_grad(ctx: KernelContext, node: Node, dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    axis = int(node.attrs.get("axis", -1))
    dt = y.dtype
    dy = dy.astype(dt, copy=False)
    s = np.sum(dy * y, axis=axis, keepdims=True, dtype=dt)
    dx = dy - s
    dx *= y
    return dx.astype(_dt(node, 0, dt), copy=False)


@register("LogSoftmaxGrad")
def log_softmax_grad(ctx: KernelContext, node: Node, dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    axis = int(node.attrs.get("axis", -1))
    dt = y.dtype
    dy = dy.astype(dt, copy=False)
    p = np.exp(y)
    p *= np.sum(dy, axis=axis, keepdims=True, dtype=dt)
    dx = dy - p
    return dx.astype(_dt(node, 0, dt), copy=False)

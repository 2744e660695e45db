"""Normalisation forward kernels: BatchNormalization, LayerNormalization, LRN (float32 in, float32 out)."""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register


def chan_sum(a3: np.ndarray) -> np.ndarray:
    """Per-channel sum of an (N, C, S) array over axes 0 and 2, in its dtype (one read pass)."""
    return np.einsum("ncs->c", a3)


def chan_dot(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """Per-channel sum of ``a3 * b3`` ((N, C, S) arrays) without the product temporary: one
    (1, S) @ (S, 1) product per (n, c), then the sum over n."""
    return np.matmul(a3[:, :, None, :], b3[:, :, :, None]).sum(axis=(0, 2, 3))


def _chan(v: np.ndarray, ndim: int, dtype: np.dtype) -> np.ndarray:
    """Per-channel vector shaped to broadcast against an (N, C, ...) tensor."""
    return v.astype(dtype, copy=False).reshape((1, -1) + (1,) * (ndim - 2))


@register("BatchNormalization")
def batch_norm(
    ctx: KernelContext,
    node: Node,
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """ONNX BatchNormalization (opset 9-15 forms).

    Training statistics are used when ``ctx.training`` is true or the node has
    ``training_mode=1``; otherwise the running statistics (inference).

    Running-variance choice: PyTorch updates its running var with the *unbiased* batch variance,
    the ONNX spec (``running_var = input_var * momentum + current_var * (1 - momentum)`` with
    ``current_var = ReduceVar(X)``) and onnxruntime's ``training_mode=1`` output use the *biased*
    one (checked against onnxruntime 1.31 and onnx.reference). We match ONNX/onnxruntime, so an
    exported model behaves the same in onnxruntime; normalisation always uses the biased variance.
    """
    eps = float(node.attrs.get("epsilon", 1e-5))
    dt = x.dtype
    training = ctx.training or int(node.attrs.get("training_mode", 0)) == 1
    if not training:
        a = scale.astype(dt, copy=False) / np.sqrt(var.astype(dt, copy=False) + np.asarray(eps, dt))
        b = bias.astype(dt, copy=False) - mean.astype(dt, copy=False) * a
        y = x * _chan(a, x.ndim, dt)
        y += _chan(b, x.ndim, dt)
        return y if len(node.outputs) == 1 else (y,) + tuple(np.array(v, copy=True) for v in (mean, var))
    n, c = x.shape[0], x.shape[1]
    x3 = x.reshape(n, c, math.prod(x.shape[2:]))  # (N, C, spatial): channel reductions over axes 0 and 2
    k = np.asarray(1.0 / max(x3.shape[0] * x3.shape[2], 1), dt)
    bmean = chan_sum(x3) * k
    centred = np.subtract(x3, bmean[:, None])
    bvar = chan_dot(centred, centred) * k
    inv = scale.astype(dt, copy=False) / np.sqrt(bvar + np.asarray(eps, dt))
    centred *= inv[:, None]  # the output, normalised in place
    centred += bias.astype(dt, copy=False)[:, None]
    y = centred.reshape(x.shape)
    if len(node.outputs) == 1:
        return y
    mom = float(node.attrs.get("momentum", 0.9))
    m = np.asarray(mom, dtype=mean.dtype)
    om = np.asarray(1.0 - mom, dtype=mean.dtype)
    new_mean = mean * m + bmean.astype(mean.dtype) * om
    new_var = var * m + bvar.astype(var.dtype) * om
    return (y, new_mean, new_var)[: len(node.outputs)]


@register("LayerNormalization")
def layer_norm(
    ctx: KernelContext, node: Node, x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None = None
) -> np.ndarray | tuple[np.ndarray, ...]:
    """ONNX LayerNormalization (opset 17): normalise over axes [axis, rank); Mean/InvStdDev outputs
    keep the reduced axes as size 1 and use the stash type (float32 unless stash_type says double)."""
    axis = int(node.attrs.get("axis", -1))
    axis = axis + x.ndim if axis < 0 else axis
    eps = float(node.attrs.get("epsilon", 1e-5))
    stash = np.dtype(np.float64) if int(node.attrs.get("stash_type", 1)) == 11 else np.dtype(np.float32)
    if x.dtype == np.float64:
        stash = np.dtype(np.float64)
    axes = tuple(range(axis, x.ndim))
    xs = x.astype(stash, copy=False)
    mean = xs.mean(axis=axes, keepdims=True, dtype=stash)
    centred = xs - mean
    inv_std = 1.0 / np.sqrt(np.mean(np.square(centred), axis=axes, keepdims=True, dtype=stash)
                            + np.asarray(eps, stash))
    y = (centred * inv_std).astype(x.dtype, copy=False)
    y *= scale.astype(x.dtype, copy=False)
    if bias is not None:
        y += bias.astype(x.dtype, copy=False)
    outs: tuple[np.ndarray, ...] = (y, mean, inv_std)
    return y if len(node.outputs) == 1 else outs[: len(node.outputs)]


def channel_window_sum(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """``out[:, c] = sum(a[:, c - before : c + after + 1])`` over the channel axis 1 (zeros outside):
    one vectorised add per window position, never a loop over channels."""
    c = a.shape[1]
    padded = np.zeros((a.shape[0], c + before + after) + a.shape[2:], dtype=a.dtype)
    padded[:, before:before + c] = a
    acc = padded[:, 0:c].copy()
    for j in range(1, before + after + 1):
        acc += padded[:, j:j + c]
    return acc


def lrn_params(node: Node) -> tuple[int, float, float, float, int]:
    """(size, alpha, beta, bias, channels before c in the window) of an ONNX LRN node."""
    size = int(node.attrs["size"])
    return (size, float(node.attrs.get("alpha", 1e-4)), float(node.attrs.get("beta", 0.75)),
            float(node.attrs.get("bias", 1.0)), (size - 1) // 2)


def lrn_denominator_base(x: np.ndarray, node: Node) -> np.ndarray:
    """``D = bias + alpha/size * sum of x^2 over the channel window`` (LRN's y = x * D^-beta)."""
    size, alpha, _, bias, lo = lrn_params(node)
    dt = x.dtype
    acc = channel_window_sum(np.square(x), lo, size - 1 - lo)
    acc *= np.asarray(alpha / size, dt)
    acc += np.asarray(bias, dt)
    return acc


@register("LRN")
def lrn(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """y = x / (bias + alpha/size * sum of x^2 over channels [c - (size-1)//2, c + ceil((size-1)/2)])^beta."""
    beta = lrn_params(node)[2]
    return x / np.power(lrn_denominator_base(x, node), np.asarray(beta, x.dtype))

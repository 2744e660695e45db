"""Forward kernels of the smooth and piecewise activations PyTorch and Keras exports use:
HardSigmoid, HardSwish, Elu, Selu, Celu, Softplus, Softsign, Erf (Log, Abs and Reciprocal are
plain ufunc kernels in :mod:`rctc.runtime.kernels.elementwise`).

ONNX semantics and attribute defaults (opset 18, rctc's import opset); float in, the same float
dtype out. ``Erf`` (what PyTorch's GELU exports to: ``x * (1 + Erf(x / sqrt 2)) / 2``) uses
:func:`erf`, a vectorised erf accurate to about 1e-7 relative (float32 round-off), since numpy
has none. ONNX's own ``Gelu`` (opset 20, above the import opset) is rewritten into these ops at
import (:func:`rctc.onnx_import._decompose_gelu`).
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register

SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
#: Numerical Recipes' erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2): fractional error < 1.2e-7
_ERFC_COEFFS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
                1.48851587, -0.82215223, 0.17087277)


def attr(node: Node, name: str, default: float) -> float:
    return float(node.attrs.get(name, default))


def erf(x: np.ndarray) -> np.ndarray:
    """erf of a float array in ``x``'s dtype (float32 arithmetic for float32 / float16, float64 for
    float64).

    ``|x| < 0.5``: the Maclaurin series (to x^13 in float32, x^23 in float64: truncation below
    the format's rounding); otherwise
    ``1 - erfc(|x|)`` with Numerical Recipes' Chebyshev fit (fractional error < 1.2e-7 of erfc,
    so below 1e-7 of erf there), signed. Each branch runs only on its own elements; NaN stays NaN.
    """
    x = np.asarray(x)
    z = x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=False)
    out = np.empty_like(z)
    small = np.abs(z) < 0.5
    zs = z[small]
    z2 = zs * zs
    term = zs.copy()
    series = zs.copy()
    for n in range(1, 12 if z.dtype == np.float64 else 7):
        term *= -z2 / z.dtype.type(n)
        series += term / z.dtype.type(2 * n + 1)
    out[small] = z.dtype.type(_TWO_OVER_SQRT_PI) * series
    big = ~small
    zb = z[big]
    a = np.abs(zb)
    one = z.dtype.type(1)
    t = one / (one + z.dtype.type(0.5) * a)
    poly = np.zeros_like(t)
    for c in reversed(_ERFC_COEFFS):
        poly *= t
        poly += z.dtype.type(c)
    with np.errstate(invalid="ignore", over="ignore"):  # inf: t * exp(-inf) = 0; NaN stays NaN
        out[big] = np.copysign(one - t * np.exp(-a * a + poly), zb)
    return out.astype(x.dtype, copy=False)


@register("HardSigmoid")
def hard_sigmoid(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """max(0, min(1, alpha * x + beta))."""
    dt = x.dtype.type
    return np.clip(x * dt(attr(node, "alpha", 0.2)) + dt(attr(node, "beta", 0.5)), dt(0), dt(1))


@register("HardSwish")
def hard_swish(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """x * max(0, min(1, x / 6 + 1 / 2))."""
    dt = x.dtype.type
    return x * np.clip(x * dt(1 / 6) + dt(0.5), dt(0), dt(1))


@register("Elu")
def elu(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    dt = x.dtype.type
    return np.where(x > 0, x, dt(attr(node, "alpha", 1.0)) * np.expm1(np.minimum(x, dt(0))))


@register("Selu")
def selu(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    dt = x.dtype.type
    alpha, gamma = dt(attr(node, "alpha", SELU_ALPHA)), dt(attr(node, "gamma", SELU_GAMMA))
    return gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, dt(0))))


@register("Celu")
def celu(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    dt = x.dtype.type
    alpha = dt(attr(node, "alpha", 1.0))
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, dt(0)) / alpha))


@register("Softplus")
def softplus(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)), stable: max(x, 0) + log1p(exp(-|x|)) (its derivative is
    :func:`~rctc.runtime.kernels.elementwise.stable_sigmoid`)."""
    return np.maximum(x, x.dtype.type(0)) + np.log1p(np.exp(-np.abs(x)))


@register("Softsign")
def softsign(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    return x / (x.dtype.type(1) + np.abs(x))


@register("Erf")
def erf_kernel(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    return erf(x)

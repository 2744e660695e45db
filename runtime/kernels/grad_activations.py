"""Backward kernels of the unary activations: ``<Op>Grad(dy, x; the forward's attributes)`` =
``dy * d<Op>/dx (x)`` for every op in :data:`DERIVATIVES`, plus ``PowGrad(dy, x, p)`` =
``dy * p * x^(p-1)`` (the base's gradient of ``Pow``).

At the kinks the derivative is the one PyTorch uses: HardSigmoid's slope only strictly
inside its ramp, HardSwish's interior formula on ``-3 < x < 3`` (0 at -3, 1 from 3 on),
Elu / Selu / Celu the negative branch at 0, Abs 0 at 0. Results have the dtype of the node's output value.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.activations import SELU_ALPHA, SELU_GAMMA, attr
from rctc.runtime.kernels.elementwise import stable_sigmoid
from rctc.runtime.kernels.registry import KernelContext, register

Derivative = Callable[[Node, np.ndarray], np.ndarray]


def _hard_sigmoid(node: Node, x: np.ndarray) -> np.ndarray:
    dt = x.dtype.type
    alpha, beta = attr(node, "alpha", 0.2), attr(node, "beta", 0.5)
    v = x * dt(alpha) + dt(beta)
    return np.where((v > 0) & (v < 1), dt(alpha), dt(0))


def _hard_swish(node: Node, x: np.ndarray) -> np.ndarray:
    dt = x.dtype.type
    inner = x * dt(1 / 3) + dt(0.5)
    return np.where(x <= -3, dt(0), np.where(x < 3, inner, dt(1)))


def _elu(node: Node, x: np.ndarray) -> np.ndarray:
    dt = x.dtype.type
    return np.where(x > 0, dt(1), dt(attr(node, "alpha", 1.0)) * np.exp(np.minimum(x, dt(0))))


def _selu(node: Node, x: np.ndarray) -> np.ndarray:
    dt = x.dtype.type
    alpha, gamma = attr(node, "alpha", SELU_ALPHA), attr(node, "gamma", SELU_GAMMA)
    return np.where(x > 0, dt(gamma), dt(gamma * alpha) * np.exp(np.minimum(x, dt(0))))


def _celu(node: Node, x: np.ndarray) -> np.ndarray:
    dt = x.dtype.type
    return np.where(x > 0, dt(1), np.exp(np.minimum(x, dt(0)) / dt(attr(node, "alpha", 1.0))))


def _softsign(node: Node, x: np.ndarray) -> np.ndarray:
    d = x.dtype.type(1) + np.abs(x)
    return np.reciprocal(d * d)


def _erf(node: Node, x: np.ndarray) -> np.ndarray:
    return x.dtype.type(2 / math.sqrt(math.pi)) * np.exp(-(x * x))


DERIVATIVES: dict[str, Derivative] = {
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish,
    "Elu": _elu,
    "Selu": _selu,
    "Celu": _celu,
    "Softplus": lambda node, x: stable_sigmoid(x),
    "Softsign": _softsign,
    "Erf": _erf,
    "Exp": lambda node, x: np.exp(x),
    "Log": lambda node, x: np.reciprocal(x),
    "Sqrt": lambda node, x: x.dtype.type(0.5) / np.sqrt(x),
    "Reciprocal": lambda node, x: -np.reciprocal(x * x),
    "Abs": lambda node, x: np.sign(x),
}


def _out(node: Node, arr: np.ndarray) -> np.ndarray:
    dt = node.outputs[0].dtype if node.outputs else None
    return arr if dt is None or arr.dtype == dt else arr.astype(dt)


def _make_kernel(derivative: Derivative) -> Callable[..., np.ndarray]:
    def kernel(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
        x = x.astype(dy.dtype, copy=False)
        return _out(node, dy * derivative(node, x))

    return kernel


for _op, _fn in DERIVATIVES.items():
    register(f"{_op}Grad")(_make_kernel(_fn))


@register("PowGrad")
def pow_grad(ctx: KernelContext, node: Node, dy: np.ndarray, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Gradient of ``Pow(x, p)`` w.r.t. the base: ``dy * p * x^(p-1)`` (``p`` broadcast), 0 where
    ``p == 0`` (as PyTorch: ``x^0`` is constant, even at ``x = 0``)."""
    x = x.astype(dy.dtype, copy=False)
    p = np.asarray(p).astype(dy.dtype, copy=False)
    zero = dy.dtype.type(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(p == zero, zero, p * np.power(x, p - p.dtype.type(1)))
    return _out(node, dy * d)

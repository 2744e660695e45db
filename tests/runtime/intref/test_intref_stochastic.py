"""Every backward rule's stochastic rounding is unbiased: the mean over many draws of the
3-bit result approaches the 24-bit (nearly unrounded) result within 4 standard errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rctc.runtime.intref import arith, expo, gelu, norm, pool
from rctc.runtime.intref import pointwise as pw
from tests.runtime.intref._plain import deq, tensor, words

X = tensor("random", (2, 2, 4, 4), 8, 1).astype(np.int8)
D = tensor("random", (2, 2, 4, 4), 8, 2).astype(np.int8)
D2 = tensor("random", (2, 2, 2, 2), 8, 3).astype(np.int8)
GAM = (np.array([90, -40], np.int8), -6)
COLS = (slice(None), slice(0, 1), slice(None), slice(0, 1))


def _cut(r: np.ndarray | None, idx) -> np.ndarray | None:
    return None if r is None else np.ascontiguousarray(r[idx])


RULES = {
    "leaky_relu": lambda b, r: pw.leaky_relu_backward(X, -4, D, -7, 0.1, b, r),
    "hardswish": lambda b, r: pw.hardswish_backward(X, -4, D, -7, b, r),
    "hardsigmoid": lambda b, r: pw.hardsigmoid_backward(X, -4, D, -7, 0.2, 0.5, b, r),
    "add (broadcast)": lambda b, r: arith.add_backward(D, -7, (2, 1, 4, 1), (4, 4), b, _cut(r, COLS),
                                                       _cut(r, (0, 0)))[0],
    "mul": lambda b, r: arith.mul_backward(X, -4, X[:1], -5, D, -7, b, r, _cut(r, slice(0, 1)))[1],
    "maxpool": lambda b, r: pool.maxpool2d_backward(X, -4, D2, -7, (3, 3), (1, 1), (0, 0, 0, 0), b, r),
    "avgpool": lambda b, r: pool.avgpool2d_backward(D2, -7, X.shape, (3, 3), (1, 1), (0, 0, 0, 0), False, b, r),
    "sigmoid": lambda b, r: expo.sigmoid_backward(X, -4, D, -7, b, r),
    "tanh": lambda b, r: expo.tanh_backward(X, -4, D, -7, b, r),
    "exp": lambda b, r: expo.exp_backward(X, -5, D, -7, b, r),
    "softmax": lambda b, r: expo.softmax_backward(*expo.softmax(X, -4), D, -7, -1, b, r),
    "erf": lambda b, r: gelu.erf_backward(X, -4, D, -7, b, r),
    "gelu": lambda b, r: gelu.gelu_backward(X, -4, D, -7, b, r),
    "batchnorm": lambda b, r: norm.batchnorm_backward(X, -4, GAM, D, -7, 1e-5, b, r)[0],
    "layernorm": lambda b, r: norm.layernorm_backward(X, -4, (np.full(4, 70, np.int8), -6), D, -7, -1, 1e-5, b,
                                                      r)[0],
}
DRAWS = 600


@pytest.mark.parametrize("name", sorted(RULES))
def test_backward_rounding_unbiased(name: str) -> None:
    rule = RULES[name]
    target = deq(rule(24, None))
    first = rule(3, words(X.shape, 0))
    step = 2.0 ** first[1]
    mean = np.mean([deq(rule(3, words(X.shape, s))) for s in range(DRAWS)], axis=0)
    assert mean.shape == target.shape
    # one draw spreads over less than one step: standard error < step / sqrt(DRAWS)
    assert np.all(np.abs(mean - target) < 4 * step / math.sqrt(DRAWS) + 2.0 ** (rule(24, None)[1]))
    nearest = deq(rule(3, None))
    assert np.abs(nearest - target).max() > np.abs(mean - target).max()  # averaging beats one rounding

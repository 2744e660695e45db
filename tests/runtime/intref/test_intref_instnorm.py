"""intref.instnorm: InstanceNorm is BatchNorm's integer algorithm with one group per (sample,
channel). Bit-exact against intref.norm's batchnorm on the (1, B*C, spatial) view with gamma /
beta tiled (the same groups, the same single rounding), and within norm's stated bound of the
float64 InstanceNorm of the same integers; the numpy kernels call it."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.ir import Node, Value
from rctc.runtime.intref import instnorm, norm
from rctc.runtime.kernels import KERNELS, KernelContext
from tests.runtime.intref._plain import deq, tensor, words

CASES = ("random", "saturated", "negative", "zeros")


def _inputs(case: str, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple, tuple, np.ndarray]:
    q = tensor(case, shape, 8, 3).astype(np.int8)
    c = shape[1]
    gamma = (tensor("random", (c,), 8, 4).astype(np.int8), -6)
    beta = (tensor("random", (c,), 8, 5).astype(np.int8), -7)
    return q, gamma, beta, tensor("random", shape, 8, 6).astype(np.int8)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("e", [-5, -2, 1])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 2, 7)])
def test_instancenorm_is_batchnorm_per_sample_and_channel(case: str, e: int, shape: tuple[int, ...]) -> None:
    q, gamma, beta, dq = _inputs(case, shape)
    b, c = shape[:2]
    view = q.reshape(1, b * c, -1)
    tiled = [(np.tile(t[0], b), t[1]) for t in (gamma, beta)]
    state = (np.zeros(b * c, np.int16), 0)
    y = instnorm.instancenorm(q, e, gamma, beta, 1e-5, 8)
    ref = norm.batchnorm_train(view, e, tiled[0], tiled[1], state, state, 1e-5, 0.9, 8)[0]
    assert y[1] == ref[1] and np.array_equal(y[0], ref[0].reshape(shape))
    x = q.astype(np.float64) * 2.0**e
    axes = tuple(range(2, q.ndim))
    xhat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
    ch = (1, c) + (1,) * (q.ndim - 2)
    real = xhat * deq(gamma).reshape(ch) + deq(beta).reshape(ch)
    assert np.abs(deq(y) - real).max() <= 2.0 ** (y[1] - 1) + np.abs(deq(gamma)).max() * 2.0**-15
    w = words(shape, 9)
    dx, dg, db = instnorm.instancenorm_backward(q, e, gamma, dq, -8, 1e-5, 8, w)
    rdx, rdg, rdb = norm.batchnorm_backward(view, e, tiled[0], dq.reshape(1, b * c, -1), -8, 1e-5, 8,
                                            w.reshape(1, b * c, -1))
    assert dx[1] == rdx[1] and np.array_equal(dx[0], rdx[0].reshape(shape))
    assert dg[1] == rdg[1] and np.array_equal(dg[0], rdg[0].reshape(b, c).sum(axis=0))
    assert db[1] == rdb[1] and np.array_equal(db[0], rdb[0].reshape(b, c).sum(axis=0))
    assert db[0].tolist() == dq.astype(np.int64).reshape(b, c, -1).sum(axis=(0, 2)).tolist()  # plain sum


def test_kernels_call_instnorm() -> None:
    q, gamma, beta, dq = _inputs("random", (2, 3, 4, 4))
    ctx = KernelContext(training=True, seed=5, step=1)
    e32 = np.array(-3, np.int32)
    node = Node("IntInstanceNormalization", "n", [], [Value("y", None, np.int8)], {"epsilon": 1e-5, "bits": 8},
                domain="rctc")
    y, ye = KERNELS["IntInstanceNormalization"](ctx, node, q, e32, gamma[0], np.array(gamma[1], np.int32), beta[0],
                                                np.array(beta[1], np.int32))
    ref = instnorm.instancenorm(q, -3, gamma, beta)
    assert int(ye) == ref[1] and np.array_equal(y, ref[0])
    gnode = Node("IntInstanceNormGrad", "g", [], [Value("dx", None, np.int8)],
                 {"epsilon": 1e-5, "bits": 8, "rounding": "stochastic"}, domain="rctc")
    gnode.meta["node_id"] = 4
    out = KERNELS["IntInstanceNormGrad"](ctx, gnode, dq, np.array(-8, np.int32), q, e32, gamma[0],
                                         np.array(gamma[1], np.int32))
    ref = instnorm.instancenorm_backward(q, -3, gamma, dq, -8, 1e-5, 8, ctx.words(gnode, q.shape))
    assert np.array_equal(out[0], ref[0][0]) and int(out[1]) == ref[0][1]
    assert np.array_equal(out[2], ref[1][0]) and np.array_equal(out[4], ref[2][0])

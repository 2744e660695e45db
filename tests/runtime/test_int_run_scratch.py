"""Kernels that hand values on to a later node of the same run (``KernelContext.scratch``): the
integer cross-entropy's gradient reuses the loss node's softmax parts, LayerNorm's backward its
forward's row statistics. What the later node returns is the integers it computes on its own
(all rows kept, some, a stale entry from other logits or another exponent)."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.ir import Node, Value
from rctc.node_ids import NODE_ID
from rctc.runtime.intref import expo
from rctc.runtime.kernels import KERNELS, KernelContext

B, C = 12, 10


def _nodes() -> tuple[Node, Node]:
    loss = Node("IntSoftmaxCrossEntropy", "loss", [], [Value("l", (), np.int64)], {}, domain="rctc")
    grad = Node("IntSoftmaxCrossEntropyGrad", "dloss", [], [Value("d", (B, C), np.int8)], {"bits": 8},
                domain="rctc")
    loss.meta[NODE_ID], grad.meta[NODE_ID] = 11, 12
    return loss, grad


def _batch(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(-127, 128, (B, C)).astype(np.int8), np.array(-4, np.int32),
            rng.integers(0, C, B).astype(np.int64))


def _grad_alone(grad: Node, q, e, lab, mask, step: int) -> tuple[np.ndarray, np.ndarray]:
    return KERNELS[grad.op_type](KernelContext(training=True, seed=5, step=step), grad, q, e, lab, mask)


@pytest.mark.parametrize("kept", ["all", "some", "one"])
def test_gradient_after_the_loss_equals_the_gradient_alone(kept: str) -> None:
    loss, grad = _nodes()
    q, e, lab = _batch(1)
    mask = np.ones(B, np.uint8)
    if kept == "some":
        mask[[1, 4, 5, 11]] = 0
    elif kept == "one":
        mask[:] = 0
        mask[3] = 1
    ctx = KernelContext(training=True, seed=5, step=3)
    lq, _ = KERNELS[loss.op_type](ctx, loss, q, e, lab, mask)
    assert ctx.scratch  # the parts are handed on ...
    dq, de = KERNELS[grad.op_type](ctx, grad, q, e, lab, mask)
    assert not ctx.scratch  # ... and taken
    ref_dq, ref_de = _grad_alone(grad, q, e, lab, mask, 3)
    assert np.array_equal(dq, ref_dq) and int(de) == int(ref_de)
    keep = mask != 0
    assert int(lq) == expo.softmax_cross_entropy(q[keep], int(e), lab[keep])[0]


def test_stale_parts_of_other_logits_or_exponent_are_not_used() -> None:
    loss, grad = _nodes()
    q, e, lab = _batch(2)
    mask = np.ones(B, np.uint8)
    ctx = KernelContext(training=True, seed=5, step=4)
    KERNELS[loss.op_type](ctx, loss, q, e, lab, mask)
    other = np.array(-2, np.int32)  # the same array read at another exponent
    dq, de = KERNELS[grad.op_type](ctx, grad, q, other, lab, mask)
    ref_dq, ref_de = _grad_alone(grad, q, other, lab, mask, 4)
    assert np.array_equal(dq, ref_dq) and int(de) == int(ref_de)
    KERNELS[loss.op_type](ctx, loss, q, e, lab, mask)
    q2 = q.copy()
    q2[0, 0] = -q2[0, 0] - 1
    dq, _ = KERNELS[grad.op_type](ctx, grad, q2, e, lab, mask)
    assert np.array_equal(dq, _grad_alone(grad, q2, e, lab, mask, 4)[0])


def test_evaluation_leaves_nothing_in_the_scratch() -> None:
    loss, _ = _nodes()
    q, e, lab = _batch(3)
    ctx = KernelContext(training=False)
    KERNELS[loss.op_type](ctx, loss, q, e, lab, np.ones(B, np.uint8))
    assert not ctx.scratch


def test_layernorm_backward_after_the_forward_equals_the_backward_alone() -> None:
    rng = np.random.default_rng(4)
    q = rng.integers(-127, 128, (3, 5, 16)).astype(np.int8)
    dq = rng.integers(-127, 128, q.shape).astype(np.int8)
    g, b = rng.integers(-127, 128, 16).astype(np.int8), rng.integers(-127, 128, 16).astype(np.int8)
    e, ge, be, de = np.array(-4, np.int32), np.array(-6, np.int32), np.array(-5, np.int32), np.array(-9, np.int32)
    fwd = Node("IntLayerNormalization", "ln", [], [Value("y", q.shape, np.int8)], {"bits": 8, "axis": -1},
               domain="rctc")
    bwd = Node("IntLayerNormGrad", "dln", [], [Value("dx", q.shape, np.int8)], {"bits": 8, "axis": -1},
               domain="rctc")
    fwd.meta[NODE_ID], bwd.meta[NODE_ID] = 21, 22
    ctx = KernelContext(training=True, seed=5, step=6)
    KERNELS[fwd.op_type](ctx, fwd, q, e, g, ge, b, be)
    assert ctx.scratch
    got = KERNELS[bwd.op_type](ctx, bwd, dq, de, q, e, g, ge)
    assert not ctx.scratch
    ref = KERNELS[bwd.op_type](KernelContext(training=True, seed=5, step=6), bwd, dq, de, q, e, g, ge)
    assert len(got) == len(ref) == 6
    assert all(np.array_equal(a, r) for a, r in zip(got, ref))
    KERNELS[fwd.op_type](ctx, fwd, q, e, g, ge, b, be)  # read back at another exponent: recomputed
    other = np.array(-3, np.int32)
    got = KERNELS[bwd.op_type](ctx, bwd, dq, de, q, other, g, ge)
    ref = KERNELS[bwd.op_type](KernelContext(training=True, seed=5, step=6), bwd, dq, de, q, other, g, ge)
    assert all(np.array_equal(a, r) for a, r in zip(got, ref))

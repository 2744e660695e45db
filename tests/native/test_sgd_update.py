"""The C fused integer SGD update (csrc/kernels/sgd_update.c) equals the numpy FusedIntUpdate kernel.

The MLP's real FusedIntUpdate nodes run in numpy (runtime/kernels/int_update.py) and in C on the
same parameter, the same exact weight-gradient product (int64 numpy matmul) and the same Philox
words, over learning rates, exponent shifts (integer updates, shifts below and above 24 bits)
and both roundings; the new parameters must be equal bit for bit, and the controller statistics
the C kernel returns (A = sum |acc|, the saturated count S; the C Gavg from A) must equal what
the numpy kernel recorded (rctc/bitwidth_rule.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import rctc
from rctc.bitwidth_rule import STATS_KEY, abs_sum
from rctc.native.codegen.runner import exact_pair
from rctc.native.kernels import Kernels
from rctc.runtime.kernels import KernelContext
from rctc.runtime.kernels.int_update import fused_int_update


@pytest.fixture(scope="module")
def graph():
    return rctc.compile("models/mlp.onnx", mode="rct", elementwise="integer", batch_size=8).graph


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_fused_sgd_update_bit_identical(graph, kernels: Kernels, rounding: str) -> None:
    rng = np.random.default_rng(3)
    nodes = [n for n in graph.nodes if n.op_type == "FusedIntUpdate"]
    assert nodes
    checked = moved = saturated = 0
    shifts: set[int] = set()
    for node in nodes:
        saved = node.attrs.get("rounding")
        node.attrs["rounding"] = rounding
        try:
            qv = node.inputs[0]
            ga, xa = node.inputs[3], node.inputs[5]
            for trial, lr in enumerate((0.05, 0.3, 1e-3, 2.0)):
                q = rng.integers(-100, 101, qv.shape).astype(qv.dtype)
                qa = rng.integers(-128, 128, ga.shape).astype(np.int8)
                qb = rng.integers(-128, 128, xa.shape).astype(np.int8)
                ea, eb = -7 - 3 * trial, -5 + trial
                e = ea + eb + (5, -10, 0, -3)[trial]  # shifts past 24 bits, within 24 bits, integer
                bits = 8 + 2 * trial
                ctx = KernelContext(training=True, seed=11, step=trial)
                want = fused_int_update(ctx, node, q, np.int32(e), np.int32(bits), qa, np.int32(ea), qb,
                                        np.int32(eb), np.float32(lr))
                acc = qa.astype(np.int64) @ qb.astype(np.int64)  # the product in the parameter's layout
                scale = -float(np.float32(lr)) * float(node.attrs.get("alpha", 1.0)) * 2.0 ** (ea + eb - e)
                m, k = exact_pair(scale)
                rand = ctx.words(node, q.shape).ravel() if rounding == "stochastic" else None
                rc, got, (a, sat) = kernels.sgd_update_fused(q, acc.reshape(q.shape), m, k, bits, rand)
                assert rc == 0
                assert got.dtype == want.dtype and np.array_equal(got, want), (node.name, lr, k)
                st = ctx.stats[STATS_KEY][node.meta["param"]]
                assert (sat, q.size) == (st.s, st.n) and a == abs_sum(acc) > 0
                assert kernels.bw_gavg(a, m, k, q.size) == st.g, (node.name, lr, k)
                saturated += sat > 0
                moved += not np.array_equal(got, q)
                shifts.add(-1 if k < -24 else 0 if k < 0 else 1)  # shift > 24 bits, <= 24, none
                checked += 1
        finally:
            node.attrs["rounding"] = saved
    assert checked == 4 * len(nodes)
    assert moved >= checked // 2  # the comparisons are of real updates, not of untouched parameters
    assert shifts == {-1, 0, 1}, shifts  # shifts past 24 bits, within 24 bits, and integer updates
    assert 0 < saturated < checked  # the saturated counts compared include non-zero ones


def test_fused_sgd_update_refuses_inexact_float(kernels: Kernels) -> None:
    q = np.zeros(4, np.int16)
    rc, _, _ = kernels.sgd_update_fused(q, np.full(4, 1 << 40, np.int64), (1 << 20) + 1, -30, 8)
    assert rc != 0  # |acc * m| >= 2^53: numpy's float64 product would round


def test_fused_sgd_update_statistic_bound(kernels: Kernels) -> None:
    """A = sum |acc| must fit uint64 (m = 0 admits any acc): the kernel refuses past it, and takes
    the largest A that fits (|INT64_MIN| = 2^63 included)."""
    q = np.zeros(3, np.int8)
    big = np.array([-(1 << 63), (1 << 62), (1 << 62) - 1], np.int64)
    rc, _, (a, s) = kernels.sgd_update_fused(q, big, 0, 0, 8)
    assert rc == 0 and a == abs_sum(big) == (1 << 64) - 1 and s == 0
    rc, _, _ = kernels.sgd_update_fused(q, big + np.array([0, 0, 1], np.int64), 0, 0, 8)
    assert rc != 0

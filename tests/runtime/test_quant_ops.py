"""Quantisation kernels (runtime/kernels/quant_ops.py) against exact Python-integer references.

QuantGrad's stochastic rounding is ``floor(x / 2^e + U / 2^16)`` with ``U`` the top 16 bits of
word ``i`` of the node's counter-based stream (``rctc.rng.random_words(seed, step, node_id, i)``):
the reference redoes it with :class:`fractions.Fraction` from words drawn straight from
``rctc.rng``, and a statistical check shows it unbiased to 2^-16 of a last bit.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from rctc.fixedpoint import choose_exponent, int_dtype_for_bits, qmax_for_bits
from rctc.ir import Node, Value
from rctc.rng import random_words
from rctc.runtime.kernels import KERNELS, KernelContext

NODE_ID = 5


def _node(op: str, attrs: dict, bits: int) -> Node:
    outs = [Value("q", None, int_dtype_for_bits(bits)), Value("e", (), np.int32)]
    n = Node(op, op, [Value("err", None, np.float32)], outs, attrs, domain="rctc")
    n.meta["node_id"] = NODE_ID
    return n


def _u16(ctx: KernelContext, n: int) -> np.ndarray:
    """The 16-bit noise of elements 0..n-1: the top half of words 0..n-1 of the node's stream."""
    return (random_words(ctx.seed, ctx.step, NODE_ID, 0, n) >> 16).astype(np.int64)


def _ref_stochastic(x: np.ndarray, e: int, ctx: KernelContext) -> list[int]:
    u = _u16(ctx, x.size)
    scale = Fraction(2) ** -e
    return [math.floor(Fraction(float(v)) * scale + Fraction(int(r), 1 << 16)) for v, r in zip(x.ravel(), u)]


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
@pytest.mark.parametrize("magnitude", [1e-30, 3e-3, 1.0, 7e4, 1e12])
def test_quant_grad_stochastic_matches_the_exact_definition(bits: int, magnitude: float) -> None:
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal(997) * magnitude).astype(np.float32)
    x[:4] = [0.0, x.max(), -np.abs(x).max(), x[5] * 2.0**-20]  # zero, both extremes, a tiny value
    ctx = KernelContext(training=True, seed=42, step=3)
    q, e = KERNELS["QuantGrad"](ctx, _node("QuantGrad", {"bits": bits}, bits), x)
    e = int(e)
    assert e == choose_exponent(float(np.abs(x).max()), bits)
    assert q.dtype == int_dtype_for_bits(bits)
    assert q.tolist() == _ref_stochastic(x, e, ctx)
    assert np.abs(q.astype(np.int64)).max() <= qmax_for_bits(bits)


def test_quant_grad_stochastic_is_unbiased_and_seeded() -> None:
    values = np.array([0.3, -0.3, 2.75, -5.5, 0.01, 100.999, -127.0], np.float32)
    n = 40000
    x = np.repeat(values[:, None], n, axis=1)
    node = _node("QuantGrad", {"bits": 8}, 8)
    q, e = KERNELS["QuantGrad"](KernelContext(seed=7), node, x)
    assert int(e) == 0  # max |x| = 127 fits 8 bits at exponent 0
    qf = q.astype(np.float64)
    lo = np.floor(values.astype(np.float64))[:, None]
    assert np.all((qf == lo) | (qf == lo + 1))
    frac = values.astype(np.float64) - np.floor(values.astype(np.float64))
    sigma = np.sqrt(np.maximum(frac * (1 - frac), 1e-4) / n)
    assert np.all(np.abs(qf.mean(axis=1) - values) < 5 * sigma + 2.0**-16)
    again, _ = KERNELS["QuantGrad"](KernelContext(seed=7), node, x)
    np.testing.assert_array_equal(q, again)
    for other_ctx in (KernelContext(seed=8), KernelContext(seed=7, step=1)):  # another seed / step
        other, _ = KERNELS["QuantGrad"](other_ctx, node, x)
        assert (q != other).any()
    grid, _ = KERNELS["QuantGrad"](KernelContext(), node,
                                   np.full(1000, 3.0, np.float32) * np.float32([1] * 999 + [127 / 3]))
    assert np.all(grid[:999] == 3)  # a value on the grid is never rounded away


@pytest.mark.parametrize("bits", [2, 8, 16])
def test_quant_grad_nearest_and_quant_act_are_rint(bits: int) -> None:
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal((3, 50)) * 9).astype(np.float32)
    x[0, :3] = [2.5, -2.5, 0.5]  # ties go to even
    q, e = KERNELS["QuantGrad"](KernelContext(), _node("QuantGrad", {"bits": bits, "rounding": "nearest"}, bits), x)
    ref = np.rint(x.astype(np.float64) * 2.0 ** -int(e))
    np.testing.assert_array_equal(q.astype(np.int64), ref.astype(np.int64))
    act = _node("QuantAct", {"bits": bits}, bits)
    act.outputs.append(Value("amax", (), np.float32))
    qa, ea, run = KERNELS["QuantAct"](KernelContext(training=True), act, x, np.array(0.0, np.float32))
    assert int(ea) == int(e) and float(run) == float(np.abs(x).max())
    np.testing.assert_array_equal(qa, q)
    # inference: exponent from the running max, values beyond it clip
    qi, ei, _ = KERNELS["QuantAct"](KernelContext(training=False), act, x * 4, np.array(run, np.float32))
    ref_i = np.clip(np.rint(x.astype(np.float64) * 4 * 2.0 ** -int(ei)), -qmax_for_bits(bits), qmax_for_bits(bits))
    np.testing.assert_array_equal(qi.astype(np.int64), ref_i.astype(np.int64))


def test_quant_grad_refuses_nan() -> None:
    with pytest.raises(FloatingPointError, match="'err' contains NaN"):
        KERNELS["QuantGrad"](KernelContext(), _node("QuantGrad", {"bits": 8}, 8),
                             np.array([1.0, np.nan], np.float32))


def test_quant_grad_stochastic_rare_draws_match_int64() -> None:
    """A million elements whose scaled value has bits below 2^-16: every draw ``U`` occurs ~16
    times, so off-by-one-draw slips (truncation instead of floor, a wrong boundary) show."""
    vals = np.float32([-1 + 2.0**-17, 3 - 2.0**-18, -100.25 - 2.0**-17, 127.0])
    w = vals[:3].astype(np.float64) * 2.0**16  # bits below 2^-16 (127 sets the exponent)
    assert np.all(np.floor(w) != w)
    x = np.repeat(vals, 1 << 18).astype(np.float32)
    ctx = KernelContext(seed=3)
    u = _u16(ctx, x.size)
    q, e = KERNELS["QuantGrad"](ctx, _node("QuantGrad", {"bits": 8}, 8), x)
    assert int(e) == 0
    ref = (np.floor(x.astype(np.float64) * 2.0**16).astype(np.int64) + u) >> 16
    np.testing.assert_array_equal(q.astype(np.int64), ref)


def test_quant_grad_stochastic_tiny_negatives_beside_huge_values() -> None:
    """e > 16 (a huge max): a subnormal negative scaled by 2^(16-e) underflows float32 to -0, whose
    floor is 0, not -1: the float64 path keeps ``floor(w) = -1``, so a draw U = 0 gives -1."""
    x = np.full(1 << 20, -(2.0**-140), np.float32)  # times 2^-17 is below half the least subnormal
    x[0] = 1e12
    ctx = KernelContext(seed=9, step=12)
    u = _u16(ctx, x.size)
    q, e = KERNELS["QuantGrad"](ctx, _node("QuantGrad", {"bits": 8}, 8), x)
    assert int(e) > 16
    ref = (np.floor(x.astype(np.float64) * 2.0 ** (16 - int(e))).astype(np.int64) + u) >> 16
    assert (ref[1:] == -1).any()  # some draws were 0
    np.testing.assert_array_equal(q.astype(np.int64), ref)

"""The bitwidth controller's exact integer rule (rctc/bitwidth_rule.py) and the controller hook.

* The statistic against its definition restated with ``Fraction`` (Gavg in fixed point, the
  exact |acc| sum, thresholds), over random and extreme integers.
* Decisions at exactly the thresholds (equal: keep; one unit past: change), the rule's order,
  the slot bounds; the rescale against ``np.rint`` (half to even) for every int16 value.
* A threshold case the float rule decided wrongly: an exact mean Gavg equal to ``--gavg-low``,
  whose float64 sum drops the small terms; the old float rule adds a bit, the integer rule
  (and the controller on a compiled graph) keeps it, and one LSB of Gavg lower adds it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rctc
from rctc.bitwidth_rule import (
    FRAC_BITS,
    G_CAP,
    STATS_KEY,
    Action,
    UpdateStat,
    Window,
    abs_sum,
    decide,
    gavg_exact,
    gavg_of_float_sum,
    gavg_of_scale,
    halve_even,
    rescale,
    threshold_fixed,
)
from rctc.ir import Node, Value
from rctc.runtime.bitwidth import BitwidthController
from rctc.runtime.kernels import KernelContext
from rctc.runtime.kernels.int_update import _apply
from rctc.slots import read_slot

I64 = st.integers(-(1 << 63), (1 << 63) - 1)


def _ref_g(value: Fraction, n: int) -> int:
    """floor(value * 2^F / n), capped: the definition, in rationals."""
    return min(math.floor(value * (1 << FRAC_BITS) / n), G_CAP) if n else 0


@settings(max_examples=300, deadline=None)
@given(st.lists(I64, max_size=40))
def test_abs_sum_is_exact(xs: list[int]) -> None:
    assert abs_sum(np.array(xs, np.int64)) == sum(abs(x) for x in xs)


def test_abs_sum_of_extremes() -> None:
    big = np.full(1000, -(1 << 63), np.int64)
    assert abs_sum(big) == 1000 << 63
    assert abs_sum(big.reshape(10, 100).T) == 1000 << 63  # a strided view


@settings(max_examples=500, deadline=None)
@given(st.integers(0, (1 << 64) - 1), I64, st.integers(-200, 200), st.integers(0, (1 << 64) - 1))
def test_gavg_exact_definition(a: int, m: int, k: int, n: int) -> None:
    assert gavg_exact(a, m, k, n) == _ref_g(Fraction(a * abs(m)) * Fraction(2) ** k, n)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 1 << 50), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.integers(1, 1 << 20))
def test_gavg_of_scale_is_the_scale_exactly(a: int, scale: float, n: int) -> None:
    assert gavg_of_scale(a, scale, n) == _ref_g(a * abs(Fraction(scale)), n)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False), st.integers(1, 1 << 40))
def test_gavg_of_float_sum_definition(total: float, n: int) -> None:
    assert gavg_of_float_sum(total, n) == _ref_g(Fraction(total), n)


def test_gavg_edges() -> None:
    assert gavg_of_float_sum(math.inf, 3) == G_CAP and gavg_of_float_sum(1.0, 0) == 0
    assert gavg_exact(5, 7, 10**6, 1) == G_CAP and gavg_exact(5, 7, -(10**6), 1) == 0
    assert gavg_exact(3, 1, -FRAC_BITS, 2) == 1  # 1.5 LSB-units of 2^-16, rounded down


def test_threshold_fixed() -> None:
    assert threshold_fixed(0.01) == 655 and threshold_fixed(1.0) == 1 << FRAC_BITS  # 655.36 -> 655
    lsb = 2.0 ** -FRAC_BITS
    assert threshold_fixed(0.5 * lsb) == 0 and threshold_fixed(1.5 * lsb) == 2  # half to even
    assert threshold_fixed(2.5 * lsb) == 2 and threshold_fixed(1e300) == G_CAP + 1
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            threshold_fixed(bad)


def _window(gs: list[int], s: int = 0, n: int = 1000) -> Window:
    w = Window()
    for g in gs:
        w.observe(UpdateStat(g, 0, n))
    w.sum_s = s
    return w


def test_decide_at_exactly_the_thresholds() -> None:
    low, high = 655, 65536
    args = (low, high, 8, 4, 16)
    assert decide(_window([low, low, low]), *args) == Action.KEEP  # mean == low: not below
    assert decide(_window([low, low, low - 1]), *args) == Action.UNDERFLOW  # sum one below
    assert decide(_window([high] * 4), *args) == Action.KEEP  # mean == high: not above
    assert decide(_window([high, high, high, high + 1]), *args) == Action.WASTED
    w = _window([1000, 1000], s=20, n=1000)  # 20 of 2000 saturated: exactly 1%
    assert decide(w, *args) == Action.KEEP
    w.sum_s = 21
    assert decide(w, *args) == Action.SATURATION
    assert decide(Window(), *args) == Action.KEEP  # nothing observed


def test_decide_order_and_bounds() -> None:
    low, high = 655, 65536
    under = _window([0], s=0)
    assert decide(under, low, high, 16, 4, 16) == Action.KEEP  # at max_bits: no more bits
    sat_and_under = _window([0], s=500)
    assert decide(sat_and_under, low, high, 8, 4, 16) == Action.SATURATION  # saturation first
    wasted = _window([10 * high])
    assert decide(wasted, low, high, 4, 4, 16) == Action.KEEP  # at min_bits
    sat_and_wasted = _window([10 * high], s=500)
    assert decide(sat_and_wasted, low, high, 16, 4, 16) == Action.WASTED  # saturation blocked at max


def test_halve_even_is_rint_for_every_int16() -> None:
    q = np.arange(-(1 << 15), 1 << 15).astype(np.int16)
    assert np.array_equal(halve_even(q), np.rint(q / 2).astype(np.int16))
    assert [int(halve_even(np.int64(v))) for v in (-3, -1, 1, 3, 5)] == [-2, 0, 0, 2, 2]


def test_rescale() -> None:
    q = np.array([-127, -3, -1, 0, 1, 3, 126, 127], np.int16)
    new, bits, exp = rescale(Action.UNDERFLOW, q, 8, -5)
    assert (bits, exp) == (9, -6) and new.dtype == q.dtype and np.array_equal(new, q * 2)
    new, bits, exp = rescale(Action.WASTED, q, 8, -5)
    # rint(q / 2), and 127 / 2 -> 64 clipped to the 7-bit range 63
    assert (bits, exp) == (7, -4) and np.array_equal(new, [-63, -2, 0, 0, 0, 2, 63, 63])
    new, bits, exp = rescale(Action.SATURATION, q, 8, -5)
    assert (bits, exp) == (9, -5) and new is q
    assert rescale(Action.KEEP, q, 8, -5) == (q, 8, -5)


# ----- a threshold case the float rule decides differently -----------------------------------

#: u = acc * 2^-60: the exact mean of |u| is (2^53 + 2) 2^-62 = 2^-9 + 2^-61, the threshold below
ACC = np.array([(1 << 53) - 1, 1, 1, 1], np.int64)
SCALE = 2.0 ** -60
LOW = 2.0 ** -9 + 2.0 ** -61


def _update_node() -> Node:
    n = Node("FusedIntUpdate", "u", [], [Value("o", (4,), np.int16)], {"rounding": "nearest"}, domain="rctc")
    n.meta.update(param="fc1.weight", node_id=3)
    return n


def _stat(acc: np.ndarray) -> tuple[UpdateStat, dict]:
    ctx = KernelContext(training=True, seed=0, step=0)
    q = np.zeros(4, np.int16)
    _apply(ctx, _update_node(), q, 8, acc.astype(np.float64) * SCALE, acc=acc, scale=SCALE)
    return ctx.stats[STATS_KEY]["fc1.weight"], ctx.stats


def test_exact_mean_at_the_threshold_keeps_where_float_added_a_bit() -> None:
    stat, stats = _stat(ACC)
    assert Fraction(abs_sum(ACC)) * Fraction(SCALE) / 4 == Fraction(LOW)  # exactly at the threshold
    float_gavg = float(np.add.reduce(np.abs(ACC.astype(np.float64) * SCALE))) / 4  # the old statistic
    assert float_gavg < LOW  # float64 lost the three small terms: the old rule said "underflow"
    assert stat == UpdateStat(threshold_fixed(LOW), 0, 4) and stats["gavg"]["fc1.weight"] == LOW
    m = rctc.compile("models/mlp.onnx", mode="rct", batch_size=8, adjust_every=1, gavg_low=LOW, gavg_high=1.0)
    ctrl = BitwidthController(m.graph)
    before = read_slot(m.graph, m.graph.value("fc1.weight"))
    ctrl(None, SimpleNamespace(step=1, stats={STATS_KEY: {"fc1.weight": stat}}))
    assert read_slot(m.graph, m.graph.value("fc1.weight")) == before and not ctrl.changes
    # one fixed-point LSB of Gavg lower (acc[0] - 2^44): one more bit, q doubled, exponent down
    lower, _ = _stat(ACC - np.array([1 << 44, 0, 0, 0], np.int64))
    assert lower.g == stat.g - 1
    q0 = m.graph.value("fc1.weight").data.copy()
    ctrl(None, SimpleNamespace(step=2, stats={STATS_KEY: {"fc1.weight": lower}}))
    after = read_slot(m.graph, m.graph.value("fc1.weight"))
    assert (after["bits"], after["exp"]) == (before["bits"] + 1, before["exp"] - 1)
    assert np.array_equal(m.graph.value("fc1.weight").data, q0 * 2)
    assert [c["reason"] for c in ctrl.changes] == ["underflow"]


def test_controller_window_spans_adjust_every_steps() -> None:
    """Three steps' stats are summed; the decision at step 3 uses their mean, then the window empties."""
    m = rctc.compile("models/mlp.onnx", mode="rct", batch_size=8, adjust_every=3)
    ctrl = BitwidthController(m.graph)
    low = ctrl.low
    n = 64 * 64
    seq = [low + 5, low - 4, low - 1]  # sum == 3 * low: keep, though two steps were below
    for step, g in enumerate(seq, 1):
        ctrl(None, SimpleNamespace(step=step, stats={STATS_KEY: {"fc1.weight": UpdateStat(g, 0, n)}}))
        assert ctrl.window["fc1.weight"].count == (step % 3)
    assert not ctrl.changes
    for step, g in enumerate([low, low, low - 1], 4):
        ctrl(None, SimpleNamespace(step=step, stats={STATS_KEY: {"fc1.weight": UpdateStat(g, 0, n)}}))
    assert [(c["step"], c["param"], c["reason"]) for c in ctrl.changes] == [(6, "fc1.weight", "underflow")]

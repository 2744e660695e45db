"""The C bitwidth controller (csrc/kernels/bitwidth.c) equals the numpy one, bit for bit.

* ``rctc_bw_gavg`` equals rctc.bitwidth_rule.gavg_exact over random and extreme 64-bit inputs
  (the 128-bit product, shifts both ways, the cap, the bounds where the cap starts).
* Window sums and decisions over random statistic sequences built to land exactly on, one
  below and one above the thresholds (and on, and just past, 1% saturated).
* The whole controller: random per-step statistics for every parameter of the MLP drive the
  numpy BitwidthController (the trainer hook, on the compiled graph) and the C twin
  (``rctc_bw_observe`` per step, ``rctc_bw_adjust`` every ``adjust_every`` steps on copies of
  the parameters): the same parameters, bits and exponents after every decision.
* The rescale on every int16 value at several widths and storage widths, and the refused inputs.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rctc
from rctc.bitwidth_rule import (
    FRAC_BITS,
    G_CAP,
    SAT_DEN,
    STATS_KEY,
    Action,
    UpdateStat,
    Window,
    decide,
    gavg_exact,
    rescale,
    threshold_fixed,
)
from rctc.native.kernels import BwWindow, Kernels
from rctc.runtime.bitwidth import BitwidthController
from rctc.slots import bits_value, exp_value

U64 = st.integers(0, (1 << 64) - 1)
I64 = st.integers(-(1 << 63), (1 << 63) - 1)
EDGE_GAVG = [
    ((1 << 64) - 1, -(1 << 63), 200, 1), ((1 << 64) - 1, -(1 << 63), -200, 1), ((1 << 64) - 1, 1, 0, 1),
    (1, 1, 126 - 1 - FRAC_BITS, (1 << 64) - 1), (1, 1, 127 - 1 - FRAC_BITS, (1 << 64) - 1),  # around the cap test
    (1 << 62, 1, -FRAC_BITS, 1), ((1 << 62) + 1, 1, -FRAC_BITS, 1), (3, -5, -FRAC_BITS - 1, 7),
    ((1 << 64) - 1, (1 << 63) - 1, -127 - FRAC_BITS + 1, 1), ((1 << 64) - 1, (1 << 63) - 1, -126 - FRAC_BITS, 1),
    (0, 5, 3, 1), (5, 0, 3, 1), (5, 3, 3, 0),
]


@settings(max_examples=1500, deadline=None)
@given(U64, I64, st.integers(-200, 200), U64)
def test_gavg_c_equals_rule(kernels: Kernels, a: int, m: int, k: int, n: int) -> None:
    assert kernels.bw_gavg(a, m, k, n) == gavg_exact(a, m, k, n)


@pytest.mark.parametrize("a,m,k,n", EDGE_GAVG)
def test_gavg_c_edges(kernels: Kernels, a: int, m: int, k: int, n: int) -> None:
    assert kernels.bw_gavg(a, m, k, n) == gavg_exact(a, m, k, n)


@st.composite
def windows(draw: st.DrawFn) -> tuple[list[UpdateStat], int, int, int, int]:
    """(stats, low, high, bits, min/max packed) with the window's sum on / next to a threshold."""
    count = draw(st.integers(1, 8))
    n = draw(st.integers(1, 1 << 20))
    big = draw(st.booleans())
    gmax = G_CAP if big else 1 << 20
    low = draw(st.integers(0, gmax))
    high = draw(st.integers(low, G_CAP + 1 if big else gmax))
    target = draw(st.sampled_from([low, high])) * count + draw(st.sampled_from([-1, 0, 1]))
    gs = [draw(st.integers(0, gmax)) for _ in range(count - 1)]
    last = target - sum(gs)
    gs.append(last if 0 <= last <= G_CAP else draw(st.integers(0, gmax)))
    ssum = n * count // SAT_DEN + draw(st.sampled_from([-1, 0, 1, 0]))  # on / next to 1%
    ss = [max(0, min(n, ssum // count))] * count
    stats = [UpdateStat(g, s, n) for g, s in zip(gs, ss)]
    lo = draw(st.integers(2, 8))
    hi = draw(st.integers(lo, 16))
    bits = draw(st.integers(lo, hi))
    return stats, low, high, bits, lo * 100 + hi


@settings(max_examples=800, deadline=None)
@given(windows())
def test_window_and_decision_c_equals_rule(kernels: Kernels, case: tuple) -> None:
    stats, low, high, bits, packed = case
    lo, hi = divmod(packed, 100)
    w, cw = Window(), BwWindow()
    for s in stats:
        w.observe(s)
        assert kernels.bw_observe(cw, *s) == 0
        assert cw.sums == w.as_list()
        assert kernels.bw_decide(cw, low, high, bits, lo, hi) == decide(w, low, high, bits, lo, hi)


def test_decisions_of_every_kind_are_exercised() -> None:
    """The window strategy reaches each decision, including at exactly a threshold."""
    seen: set[Action] = set()

    @settings(max_examples=400, deadline=None, database=None)
    @given(windows())
    def run(case: tuple) -> None:
        stats, low, high, bits, packed = case
        w = Window()
        for s in stats:
            w.observe(s)
        seen.add(decide(w, low, high, bits, *divmod(packed, 100)))

    run()
    assert seen == set(Action)


def test_observe_refuses_out_of_range(kernels: Kernels) -> None:
    w = BwWindow()
    assert kernels.bw_observe(w, G_CAP + 1, 0, 10) != 0
    assert kernels.bw_observe(w, 0, 11, 10) != 0  # more saturated than elements
    assert kernels.bw_observe(w, G_CAP, 10, (1 << 64) - 1) == 0
    assert kernels.bw_observe(w, 0, 0, 1) != 0  # sum_n would pass 2^64
    assert w.sums == [1, G_CAP, 10, (1 << 64) - 1]  # refused calls leave the window as it was


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
@pytest.mark.parametrize("action", list(Action))
def test_rescale_c_equals_rule_on_every_value(kernels: Kernels, dtype: type, action: Action) -> None:
    width = np.dtype(dtype).itemsize * 8
    for bits in sorted({3, 5, 8, min(16, width) - 1, min(16, width)} - {width}):
        qmax = (1 << (bits - 1)) - 1
        q = np.arange(-qmax, qmax + 1).astype(dtype)
        want, wbits, wexp = rescale(action, q.copy(), bits, -3)
        w = BwWindow()
        g = 0 if action == Action.UNDERFLOW else G_CAP
        s = 1 if action == Action.SATURATION else 0
        assert kernels.bw_observe(w, g, s, 1) == 0
        got = q.copy()
        low, high = (1, 1) if action != Action.KEEP else (0, G_CAP + 1)
        assert kernels.bw_adjust(w, low, high, 2, bits + 1, got, bits, -3) == (action, wbits, wexp)
        assert np.array_equal(got, want), (bits, action)
        assert w.sums == [0, 0, 0, 0]  # adjust empties the window


# ----- the whole controller: numpy hook vs the C twin -------------------------------------------

@pytest.fixture(scope="module")
def mlp():
    return rctc.compile("models/mlp.onnx", mode="rct", batch_size=8, adjust_every=3, gavg_low=0.01,
                        gavg_high=1.0).graph


@st.composite
def step_stats(draw: st.DrawFn, sizes: dict[str, int]) -> list[dict[str, UpdateStat]]:
    low, high = threshold_fixed(0.01), threshold_fixed(1.0)
    steps = []
    for _ in range(draw(st.integers(3, 24))):
        row = {}
        for name, n in sizes.items():
            g = draw(st.one_of(st.sampled_from([low - 1, low, low + 1, high - 1, high, high + 1, 0]),
                               st.integers(0, 4 * high)))
            s = draw(st.one_of(st.sampled_from([0, n // SAT_DEN, n // SAT_DEN + 1]), st.integers(0, n)))
            if draw(st.integers(0, 9)):  # now and then a parameter records nothing
                row[name] = UpdateStat(g, s, n)
        steps.append(row)
    return steps


def test_controller_c_equals_numpy_controller(mlp, kernels: Kernels) -> None:  # noqa: ANN001
    g = mlp
    params = [p for p in g.params(trainable_only=True) if "slot" in p.meta]
    sizes = {p.name: int(np.prod(p.shape)) for p in params}
    saved = {p.name: (p.data.copy(), bits_value(g, p).data.copy(), exp_value(g, p).data.copy()) for p in params}
    decided: set[str] = set()

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(step_stats(sizes))
    def run(steps: list[dict[str, UpdateStat]]) -> None:
        for p in params:
            q, b, e = saved[p.name]
            p.data, bits_value(g, p).data, exp_value(g, p).data = q.copy(), b.copy(), e.copy()
        g.meta["bit_changes"] = []
        ctrl = BitwidthController(g)
        c = {p.name: [BwWindow(), np.ascontiguousarray(saved[p.name][0].copy()), int(saved[p.name][1]),
                      int(saved[p.name][2]), int(p.meta["slot"]["min_bits"]), int(p.meta["slot"]["max_bits"])]
             for p in params}
        for step, row in enumerate(steps, 1):
            ctrl(None, SimpleNamespace(step=step, stats={STATS_KEY: row}))
            for name, stat in row.items():
                assert kernels.bw_observe(c[name][0], *stat) == 0
            if step % ctrl.every:
                continue
            for p in params:
                w, q, bits, exp, lo, hi = c[p.name]
                action, c[p.name][2], c[p.name][3] = kernels.bw_adjust(w, ctrl.low, ctrl.high, lo, hi, q, bits, exp)
                assert np.array_equal(q, p.data), (step, p.name)
                assert (c[p.name][2], c[p.name][3]) == (int(bits_value(g, p).data), int(exp_value(g, p).data))
                if action:
                    decided.add(Action(action).name)
            assert [w.as_list() for w in ctrl.window.values()] == [c[n][0].sums for n in ctrl.window]

    try:
        run()
    finally:
        for p in params:
            q, b, e = saved[p.name]
            p.data, bits_value(g, p).data, exp_value(g, p).data = q, b, e
        g.meta["bit_changes"] = []
    assert decided == {"SATURATION", "UNDERFLOW", "WASTED"}  # every rescale was compared

"""The updates of an integer gradient accumulator (IntAccSGDUpdate, IntAccMomentumUpdate).

* IntAccSGDUpdate is FusedIntUpdate with the accumulator given: fed the int64 product a
  FusedIntUpdate forms (same node id, so the same random words), it gives the same bits and the
  same controller statistics, for both roundings, with weight decay and alpha;
* against its definition written with exact rationals (nearest rounding: ``q + round_half_even(
  gq * -lr * 2^(ge - e))`` clipped; stochastic: ``floor(u) + [U < frac(u) 2^24]`` with U the top
  24 bits of word i of the node's stream);
* IntAccMomentumUpdate gives the bits of ``Dequantize(gq, ge)`` then IntMomentumUpdate (the v1
  graph) and of FusedIntMomentumUpdate of the same product.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from rctc.ir import Node, Value
from rctc.rng import random_words
from rctc.runtime.kernels import KERNELS, KernelContext

SEED, STEP, NODE = 11, 4, 77


def _node(op: str, attrs: dict[str, Any], nout: int = 1) -> Node:
    n = Node(op, "p/update", [], [Value(f"o{i}", None, None) for i in range(nout)], attrs, domain="rctc")
    n.meta.update({"node_id": NODE, "param": "p"})
    return n


def _run(op: str, attrs: dict[str, Any], *args: Any, nout: int = 1) -> tuple[Any, dict]:
    ctx = KernelContext(training=True, seed=SEED, step=STEP)
    out = KERNELS[op](ctx, _node(op, attrs, nout), *args)
    return out, ctx.stats


def _case(seed: int, shape: tuple[int, ...] = (6, 5)) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    qa = rng.integers(-127, 128, (shape[0], 9)).astype(np.int8)
    qb = rng.integers(-127, 128, (9, shape[1])).astype(np.int8)
    return {"q": rng.integers(-100, 101, shape).astype(np.int8), "e": np.array(-7, np.int32),
            "bits": np.array(8, np.int32), "qa": qa, "ea": np.array(-6, np.int32), "qb": qb,
            "eb": np.array(-5, np.int32), "lr": np.float32(rng.choice([0.05, 0.3, 2.5]))}


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("extra", [{}, {"weight_decay": 1e-2}, {"alpha": 0.5}])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_acc_sgd_is_the_fused_update_of_its_accumulator(rounding: str, extra: dict, seed: int) -> None:
    c = _case(seed)
    acc = c["qa"].astype(np.int64) @ c["qb"].astype(np.int64)
    attrs = {"rounding": rounding, **extra}
    fused, fstats = _run("FusedIntUpdate", {**attrs, "product": "IntGemm"}, c["q"], c["e"], c["bits"], c["qa"],
                         c["ea"], c["qb"], c["eb"], c["lr"])
    ge = np.array(int(c["ea"]) + int(c["eb"]), np.int32)
    got, stats = _run("IntAccSGDUpdate", attrs, c["q"], c["e"], c["bits"], acc, ge, c["lr"])
    assert got.dtype == c["q"].dtype and np.array_equal(got, fused)
    assert stats == fstats
    assert not np.array_equal(got, c["q"])  # the case moves the parameter


def _exact(q: np.ndarray, e: int, bits: int, gq: np.ndarray, ge: int, lr: float, rounding: str) -> np.ndarray:
    """The definition with exact rationals (the kernel's float64 is exact while |gq| lr's mantissa < 2^53)."""
    qmax = 2 ** (bits - 1) - 1
    scale = -Fraction(lr) * Fraction(2) ** (ge - e)
    words = random_words(SEED, STEP, NODE, 0, gq.size) >> 8
    out = []
    for i, (qi, gi) in enumerate(zip(q.reshape(-1).tolist(), gq.reshape(-1).tolist())):
        u = gi * scale
        fl = math.floor(u)
        frac = u - fl
        if rounding == "nearest":
            du = fl + (1 if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and fl % 2) else 0)
        else:
            du = fl + (1 if Fraction(int(words[i])) < frac * 2**24 else 0)
        out.append(max(-qmax, min(qmax, qi + du)))
    return np.array(out, np.int64).reshape(q.shape)


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("gdtype", [np.int64, np.int32, np.int8])
def test_acc_sgd_against_its_exact_definition(rounding: str, gdtype: Any) -> None:
    rng = np.random.default_rng(5)
    q = rng.integers(-2000, 2001, 60).astype(np.int16)
    for e, ge, lr in ((-9, -12, 0.1), (-3, -20, 0.75), (-14, -9, 1e-3), (-6, -20, 0.05)):
        step = float(np.float32(lr)) * 2.0 ** (ge - e)  # one unit of gq in last-bit units
        # most updates a few hundred last bits (rounding visible), a few past the clip bound
        want_lim = max(2, int(300 / step))
        lim = min(np.iinfo(gdtype).max, 2**28, want_lim)
        gq = rng.integers(-lim, lim, 60).astype(gdtype)
        gq[:5] = [0, 1, -1, 3, np.iinfo(gdtype).max if gdtype != np.int64 else 2**28]
        got, stats = _run("IntAccSGDUpdate", {"rounding": rounding}, q, np.array(e, np.int32),
                          np.array(12, np.int32), gq, np.array(ge, np.int32), np.float32(lr))
        want = _exact(q, e, 12, gq, ge, float(np.float32(lr)), rounding)
        assert got.dtype == q.dtype and np.array_equal(got.astype(np.int64), want), (e, ge, lr)
        if lim == want_lim:  # the dtype holds gradients that move q: rounding, not only clipping, decides
            assert (want != q).mean() > 0.5 and (np.abs(want) < 2047).mean() > 0.5
        assert stats["gavg"]["p"] == pytest.approx(float(np.abs(gq.astype(np.float64)).mean() * step))


@pytest.mark.parametrize("seed", [0, 3])
def test_acc_momentum_is_dequantize_then_momentum(seed: int) -> None:
    c = _case(seed, (4, 7))
    acc = c["qa"].astype(np.int64) @ c["qb"].astype(np.int64)
    ge = np.array(int(c["ea"]) + int(c["eb"]), np.int32)
    rng = np.random.default_rng(seed + 10)
    vq = rng.integers(-30000, 30001, acc.shape).astype(np.int16)
    ve = np.array(-14, np.int32)
    attrs = {"momentum": 0.9, "velocity_bits": 16, "rounding": "stochastic"}
    g, _ = _run("Dequantize", {}, acc, ge)
    assert g.dtype == np.float32
    v1, v1_stats = _run("IntMomentumUpdate", attrs, c["q"], c["e"], c["bits"], g, vq, ve, c["lr"], nout=3)
    got, stats = _run("IntAccMomentumUpdate", attrs, c["q"], c["e"], c["bits"], acc, ge, vq, ve, c["lr"], nout=3)
    fused, _ = _run("FusedIntMomentumUpdate", {**attrs, "product": "IntGemm"}, c["q"], c["e"], c["bits"], c["qa"],
                    c["ea"], c["qb"], c["eb"], vq, ve, c["lr"], nout=3)
    for a, b, f in zip(got, v1, fused):
        assert np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b) and np.array_equal(a, f)
    assert stats == v1_stats
    assert not np.array_equal(got[0], c["q"]) and not np.array_equal(got[1], vq)

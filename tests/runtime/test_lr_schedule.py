"""Learning-rate schedules (constant / step / cosine, linear warmup) against closed-form references,
and the rates a real training run feeds the graph (first run, a continued run, a resumed run)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import rctc
from rctc.data import load_data
from rctc.runtime.trainer import LRSchedule

MODELS = Path(__file__).resolve().parents[2] / "models"


def _ref(kind: str, base: float, total: int, warmup: int, k: int, step_size: int = 0, gamma: float = 0.1) -> float:
    if k < warmup:
        return base * (k + 1) / warmup
    t, span = k - warmup, total - warmup
    if kind == "cosine":
        return 0.5 * base * (1 + math.cos(math.pi * min(t, span) / span))
    if kind == "step":
        return base * gamma ** (t // (step_size or max(span // 3, 1)))
    return base


@pytest.mark.parametrize("kind", ["constant", "step", "cosine"])
@pytest.mark.parametrize("warmup", [0, 4])
def test_schedule_closed_form(kind: str, warmup: int) -> None:
    s = LRSchedule(0.2, kind, 30, warmup)
    got = [s(k) for k in range(30)]
    assert got == pytest.approx([_ref(kind, 0.2, 30, warmup, k) for k in range(30)], rel=1e-12)
    if warmup:
        assert got[:warmup] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    if kind == "cosine":
        assert got[warmup] == pytest.approx(0.2) and s(30) == pytest.approx(0.0, abs=1e-15)
        assert all(a >= b for a, b in zip(got[warmup:], got[warmup + 1:]))
    if kind == "step" and not warmup:  # default step size: a third of the run -> three levels
        assert sorted(set(np.round(got, 12)), reverse=True) == pytest.approx([0.2, 0.02, 0.002])


def test_step_size_gamma_and_start_offset() -> None:
    s = LRSchedule(1.0, "step", 100, 0, step_size=10, gamma=0.5, start=1000)
    assert [s(1000 + k) for k in (0, 9, 10, 25, 99)] == pytest.approx([1, 1, 0.5, 0.25, 0.5**9])


def _rates(m: rctc.CompiledModel, **kw: object) -> list[float]:
    ds = load_data("digits:train")
    seen: list[float] = []
    m.train(ds.x[:256], ds.y[:256], on_step=lambda r: seen.append(r.lr), **kw)  # type: ignore[arg-type]
    return seen


def test_training_feeds_the_scheduled_rate() -> None:
    m = rctc.compile(MODELS / "mlp.onnx", mode="fp32", batch_size=32)
    got = _rates(m, steps=12, lr=0.1, lr_schedule="cosine", warmup_steps=3)
    assert got == pytest.approx([_ref("cosine", 0.1, 12, 3, k) for k in range(12)], rel=1e-12)
    # a second run on the same model starts its own schedule (warmup included) at its first step
    got = _rates(m, steps=6, lr=0.1, lr_schedule="step", warmup_steps=2)
    assert got == pytest.approx([_ref("step", 0.1, 6, 2, k) for k in range(6)], rel=1e-12)
    assert _rates(m, epochs=1, lr=0.05) == [0.05] * 8

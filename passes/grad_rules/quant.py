"""Gradient rule of FakeQuant: the straight-through estimator (the gradient passes unchanged)."""

from __future__ import annotations

from rctc.passes.grad_rules import rule


@rule("FakeQuant")
def fake_quant_grad(b, node, dys):  # type: ignore[no-untyped-def]
    return [dys[0]]

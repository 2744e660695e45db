"""rng.random_words_many and the trainer's DrawPlan: batched draws are the very words of
one-at-a-time draws, whatever was planned, and a planned step trains bit-identically."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.ir import Node
from rctc.rng import random_words, random_words_many
from rctc.runtime.kernels.registry import DRAW_STRIDE, DrawPlan, KernelContext


def test_random_words_many_is_random_words_per_request() -> None:
    reqs = [(5, 0, 10), (7, 3, 1), (9, DRAW_STRIDE + 1, 70001), (0, 0, 0), (2**32 - 1, 2**36 - 2, 33),
            (5, 0, 10), (3, 4 * 2**32 - 6, 40), (1, 2**64 - 9, 9)]  # crossing block 2^32; the stream's end
    got = random_words_many(2**64 - 3, 77, reqs)
    assert len(got) == len(reqs)
    for (n, s, c), g in zip(reqs, got):
        assert g.dtype == np.uint32 and np.array_equal(g, random_words(2**64 - 3, 77, n, s, c))
    assert random_words_many(1, 2, []) == []


@pytest.mark.parametrize("bad", [(-1, 0, 1), (0, -1, 1), (0, 2**64 - 1, 2), (2**32, 0, 1)])
def test_random_words_many_refuses_what_random_words_refuses(bad: tuple) -> None:
    with pytest.raises(ValueError):
        random_words(1, 2, *bad)
    with pytest.raises(ValueError):
        random_words_many(1, 2, [bad])


class _Op:  # stands in for an op definition with the needs-rng trait
    @staticmethod
    def has(trait: str) -> bool:
        return True


def _node(nid: int) -> Node:
    n = Node.__new__(Node)
    n.name, n.op_type, n.meta, n.attrs = f"n{nid}", "Requantize", {"node_id": nid}, {}
    return n


def test_draw_plan_serves_the_same_words_and_adapts(monkeypatch: pytest.MonkeyPatch) -> None:
    import rctc.runtime.kernels.registry as reg

    monkeypatch.setattr(reg, "lookup", lambda op: _Op)
    monkeypatch.setattr(reg, "node_id", lambda node: node.meta["node_id"])
    plan = DrawPlan()
    asks = [[(1, (3, 4)), (2, (100,)), (3, (DrawPlan.SMALL + 1,))], [(1, (3, 4)), (2, (100,)), (4, (7,))],
            [(4, (7,)), (1, (2,))]]
    for step, ask in enumerate(asks):
        ctx, plain = KernelContext(training=True, seed=9, step=step, draws=plan), KernelContext(seed=9, step=step)
        for nid, shape in ask:
            for draw in (0, 1):
                a = ctx.words(_node(nid), shape, draw=draw)
                assert a.shape == shape and np.array_equal(a, plain.words(_node(nid), shape, draw=draw))
    # the third step's plan was the second step's requests (the oversized one never enters a plan)
    assert all(key[2] <= DrawPlan.SMALL for key in plan._plan)

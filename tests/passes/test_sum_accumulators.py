"""sum_accumulators: a backward IntAdd reads its GEMM contributions' int32 accumulators.

The tiny transformer's q / k / v data gradients are summed from their IntGemm accumulators (the
Reshape between rebuilt on int32), three Requantize nodes fewer than without the pass, one
rounding for the sum; convolution data gradients (ResNet-8) and ``--elementwise float`` graphs
are left as they are; a contribution something else also reads keeps its Requantize. The sum's
integers are intref.arith.add's of the exact accumulators (tests/runtime/intref), and the native
backend's equal the numpy reference's on this graph (tests/native).
"""

from __future__ import annotations

import numpy as np
import pytest

import rctc
from rctc import models
from rctc.ir import Graph
from rctc.options import CompileOptions
from rctc.passes import sum_accumulators
from rctc.passes.registry import PIPELINES


def _backward_adds(g: Graph) -> list:
    return [n for n in g.nodes if n.op_type == "IntAdd" and n.meta.get("phase") == "backward"]


def _source(v):
    """The node behind ``v``, looking through Reshape."""
    p = v.producer
    while p is not None and p.op_type == "Reshape":
        p = p.inputs[0].producer
    return p


def test_transformer_sums_the_projection_gradients_at_their_accumulators(monkeypatch: pytest.MonkeyPatch) -> None:
    g = rctc.compile(models.path("tiny_transformer"), mode="rct", batch_size=2).graph
    summed = [(n, i) for n in _backward_adds(g) for i in (0, 2) if np.dtype(n.inputs[i].dtype) == np.int32]
    assert len(summed) == 3  # v + k, then + q
    for add, i in summed:
        src = _source(add.inputs[i])
        assert src is not None and src.op_type == "IntGemm"
        assert add.inputs[i + 1] is src.outputs[1]  # the accumulator's own exponent
        assert add.attrs["rounding"] == "stochastic" and add.attrs["bits"] == 8
    monkeypatch.setitem(PIPELINES, "rct", [p for p in PIPELINES["rct"] if p != "sum_accumulators"])
    g0 = rctc.compile(models.path("tiny_transformer"), mode="rct", batch_size=2).graph
    count = lambda gr, op: sum(n.op_type == op for n in gr.nodes)  # noqa: E731
    assert count(g0, "Requantize") - count(g, "Requantize") == 3
    assert all(np.dtype(n.inputs[i].dtype) == np.int8 for n in _backward_adds(g0) for i in (0, 2))


def test_convolution_gradients_and_float_graphs_are_left_alone() -> None:
    g = rctc.compile(models.path("resnet8"), mode="rct", batch_size=2).graph
    adds = _backward_adds(g)
    assert adds and all(np.dtype(n.inputs[i].dtype) == np.int8 for n in adds for i in (0, 2))
    gf = rctc.compile(models.path("tiny_transformer"), mode="rct", batch_size=2, elementwise="float").graph
    assert not _backward_adds(gf)


def _two_products(extra_reader: bool) -> Graph:
    """(A @ W1) + (A @ W2) in the backward, each product requantised, as requantise leaves it;
    ``extra_reader``: the first requantised product is also a graph output."""
    g = Graph("sums")
    a = g.add_input("a", (4, 3), np.int8)
    ea = g.add_const("ea", np.array(-4, np.int32))
    outs = []
    for k in (1, 2):
        w = g.add_const(f"w{k}", np.arange(15, dtype=np.int8).reshape(3, 5) - 7 * k)
        ew = g.add_const(f"ew{k}", np.array(-3 - k, np.int32))
        gemm = g.add_node("IntGemm", [a, ea, w, ew], [(f"acc{k}", (4, 5), np.int32), (f"acc{k}_e", (), np.int32)],
                          {}, domain="rctc")
        rq = g.add_node("Requantize", list(gemm.outputs), [(f"q{k}", (4, 5), np.int8), (f"e{k}", (), np.int32)],
                        {"bits": 8, "rounding": "stochastic"}, domain="rctc")
        for n in (gemm, rq):
            n.meta["phase"] = "backward"
        outs.append(rq.outputs)
    add = g.add_node("IntAdd", [*outs[0], *outs[1]], [("s", (4, 5), np.int8), ("s_e", (), np.int32)],
                     {"bits": 8, "rounding": "stochastic"}, domain="rctc")
    add.meta["phase"] = "backward"
    g.outputs = [add.outputs[0], add.outputs[1]] + ([outs[0][0]] if extra_reader else [])
    g.verify()
    return g


@pytest.mark.parametrize("extra_reader", [False, True])
def test_a_contribution_read_elsewhere_keeps_its_requantize(extra_reader: bool) -> None:
    g = _two_products(extra_reader)
    sum_accumulators.run(g, CompileOptions())
    g.verify()
    add = next(n for n in g.nodes if n.op_type == "IntAdd")
    assert [v.name for v in add.inputs] == (["q1", "e1"] if extra_reader else ["acc1", "acc1_e"]) + ["acc2", "acc2_e"]
    assert sum(n.op_type == "Requantize" for n in g.nodes) == (1 if extra_reader else 0)


def test_float_elementwise_option_leaves_the_graph() -> None:
    g = _two_products(False)
    before = [n.name for n in g.nodes]
    sum_accumulators.run(g, CompileOptions(elementwise="float"))
    assert [n.name for n in g.nodes] == before

"""IR invariants: tracked uses, safe removal, verify() catching broken graphs, networkx algorithms."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.ir import Graph, IRError


def _chain() -> tuple[Graph, list]:
    g = Graph()
    x = g.add_input("x", (2, 3), np.float32)
    w = g.add_value("w", (3, 3), np.float32, "param", np.ones((3, 3), np.float32))
    a = g.add_node("MatMul", [x, w], [("a", (2, 3), np.float32)])
    b = g.add_node("Relu", [a.outputs[0]], [("b", (2, 3), np.float32)])
    c = g.add_node("Add", [b.outputs[0], a.outputs[0]], [("c", (2, 3), np.float32)])
    g.outputs = [c.outputs[0]]
    return g, [a, b, c]


def test_uses_are_tracked_and_updated_by_set_input() -> None:
    g, (a, b, c) = _chain()
    av = a.outputs[0]
    assert {(n.name, i) for n, i in av.uses} == {(b.name, 0), (c.name, 1)}
    c.set_input(1, g.value("x"))
    assert [(n.name, i) for n, i in av.uses] == [(b.name, 0)]
    assert (c, 1) in g.value("x").uses
    g.verify()


def test_replace_all_uses_and_safe_removal() -> None:
    g, (a, b, c) = _chain()
    with pytest.raises(IRError, match="still used"):
        g.remove_node(b)
    g.replace_value(b.outputs[0], a.outputs[0])
    g.remove_node(b)
    assert "b" not in g.values
    g.verify()
    with pytest.raises(IRError, match="graph output"):
        g.remove_node(c)


def test_verify_catches_wrong_order_missing_shape_and_dangling_use() -> None:
    g, (a, b, c) = _chain()
    g.nodes = [b, a, c]
    with pytest.raises(IRError, match="topological order"):
        g.verify()
    g.toposort()
    assert [n.name for n in g.nodes] == [a.name, b.name, c.name]
    g.verify()
    b.outputs[0].shape = None
    with pytest.raises(IRError, match="no shape"):
        g.verify()
    b.outputs[0].shape = (2, 3)
    g.nodes.remove(c)  # bypassing the IR methods leaves a dangling use
    with pytest.raises(IRError):
        g.verify()


def test_remove_unused_and_liveness() -> None:
    g, (a, b, c) = _chain()
    extra = g.add_node("Relu", [a.outputs[0]], [("dead", (2, 3), np.float32)])
    assert g.remove_unused() == 1
    assert extra.graph is None and "dead" not in g.values
    ranges = g.live_ranges()
    assert ranges["a"] == (0, 2) and ranges["b"] == (1, 2) and ranges["c"] == (2, 2)
    assert g.ancestors([c.outputs[0]]) == {a.name, b.name, c.name}


def test_unique_names() -> None:
    g = Graph()
    v1 = g.add_value("t", (1,), np.float32, "const", np.zeros(1, np.float32))
    v2 = g.add_value("t", (1,), np.float32, "const", np.zeros(1, np.float32))
    assert v1.name != v2.name
    n1 = g.add_node("Relu", [v1], 1)
    n2 = g.add_node("Relu", [v2], 1)
    assert n1.name != n2.name


@pytest.mark.parametrize("model", ["mlp", "lenet", "resnet8", "tiny_transformer"])
def test_ancestors_is_networkx_reachability(model: str) -> None:
    """Graph.ancestors walks the IR's producer links; networkx over to_networkx() is the reference."""
    import networkx as nx

    import rctc
    from rctc.models import build

    g = rctc.compile(build(model), mode="rct", batch_size=4).graph
    dg = g.to_networkx()
    picks = [g.outputs[0], *list(g.values.values())[::7]]
    for v in picks:
        want = set() if v.producer is None else {v.producer.name} | nx.ancestors(dg, v.producer.name)
        assert g.ancestors([v]) == want, v.name
    every = [g.value(n) for n in g.state_updates.values()] + list(g.outputs)
    want = set().union(*({p.name} | nx.ancestors(dg, p.name) for p in (v.producer for v in every) if p))
    assert g.ancestors(every) == want

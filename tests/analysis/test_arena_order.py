"""The device step's order and layout (rctc.analysis.arena): updates early but after every node
they depend on and every other reader of their parameter, never later than the schedule; the
running statistics of BatchNorm and every parameter written in place; values aligned for their
size with no two live values sharing a byte; and the smaller arena the early updates buy."""

from __future__ import annotations

import pytest

import rctc
from rctc.analysis import arena as A
from rctc.ops import UPDATE_OPS


@pytest.fixture(scope="module")
def resnet8():
    return rctc.compile("models/resnet8.onnx", mode="rct", batch_size=1).graph


def _schedule(g):
    needed = {n.name for n in A.device_nodes(g)}
    return [n for n in g.nodes if n.name in needed]


def test_updates_early_respect_every_dependency(resnet8) -> None:
    g = resnet8
    sched, order = _schedule(g), A.device_nodes(g)
    assert sorted(n.name for n in sched) == sorted(n.name for n in order)
    pos = {n.name: i for i, n in enumerate(order)}
    producer = {o.name: n.name for n in order for o in n.outputs}
    moved = 0
    for i, n in enumerate(order):
        for v in n.inputs:  # every input is made before it is read
            if v is not None and v.name in producer:
                assert pos[producer[v.name]] < i, (n.name, v.name)
        if n.op_type in UPDATE_OPS:
            param = n.inputs[0].name
            assert all(pos[m.name] < i for m in order if m is not n and param in {v.name for v in m.inputs if v})
            before = sum(m.op_type not in UPDATE_OPS for m in order[:i])  # the other nodes ahead of it
            old = [m.name for m in sched].index(n.name)
            was = sum(m.op_type not in UPDATE_OPS for m in sched[:old])
            assert before <= was
            moved += before < was
    others = [n.name for n in order if n.op_type not in UPDATE_OPS]
    assert others == [n.name for n in sched if n.op_type not in UPDATE_OPS]  # the rest keep their order
    assert moved >= 20  # ResNet-8's conv / BN updates all move up
    assert A.layout(g, order, in_place=True).arena_bytes < A.layout(g, sched, in_place=True).arena_bytes


def test_state_written_in_place_and_values_aligned(resnet8) -> None:
    g = resnet8
    nodes = A.device_nodes(g)
    inplace = A.in_place_updates(g, nodes)
    bn = [n for n in nodes if n.op_type == "IntBatchNormalization"]
    assert bn and all(n.outputs[k].name in inplace for n in bn for k in (2, 3, 4, 5))
    assert all(n.outputs[0].name in inplace for n in nodes if n.op_type in UPDATE_OPS)
    lay = A.device_layout(g)
    values = {v.name: v for n in nodes for v in A.tensors(n, A.step_arguments(g))}
    spans = []
    for nm, (region, off) in lay.offsets.items():
        size = A.nbytes(values[nm])
        assert off % A.alignment(size) == 0, (nm, off, size)
        if region == "state" and nm in lay.state:  # the stored values (an in-place new value shares one)
            spans.append((off, off + size, nm))
    spans.sort()
    assert all(a[1] <= b[0] or a[2] == b[2] for a, b in zip(spans, spans[1:]))  # no state bytes shared
    assert lay.arena_bytes % A.ALIGN == 0 and lay.state_bytes % A.ALIGN == 0
    assert A.alignment(4) == A.SMALL_ALIGN == 8 and A.alignment(64) == A.ALIGN


def test_a_reader_of_a_parameter_view_keeps_the_update_after_it(resnet8) -> None:
    """A node that reads a Reshape view of a parameter reads the parameter's bytes: the update must
    not move ahead of it, and may write in place only once that reader has run."""
    import numpy as np

    from rctc.ir import Node, Value

    g = resnet8
    order = A.device_nodes(g)
    u = next(n for n in order if n.op_type in UPDATE_OPS)
    w = u.inputs[0]
    view = Value(f"{w.name}.flat", (int(np.prod(w.shape)),), w.dtype)
    shape = Value(f"{w.name}.flat_shape", (1,), np.int64)
    reshape = Node("Reshape", f"{w.name}.view", [w, shape], [view])
    reader = Node("Relu", f"{w.name}.view_reader", [view], [Value(f"{w.name}.read", view.shape, w.dtype)])
    assert A.views([reshape]) == {view.name: w.name}
    at = order.index(u)
    nodes = [*order[:at], reshape, reader, *order[at:]]  # the view's reader runs just before the update
    moved = A.updates_early(g, nodes)
    assert moved.index(u) > moved.index(reader), "the update moved ahead of a reader of its parameter's view"
    assert u.outputs[0].name in A.in_place_updates(g, moved)
    # a reader of the view after the update reads the old bytes: the update must not overwrite w in place
    assert u.outputs[0].name not in A.in_place_updates(g, [*order, reshape, reader])

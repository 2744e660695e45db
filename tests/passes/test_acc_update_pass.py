"""fuse_updates in integer rct graphs: no Dequantize feeds an update; the sample mask is uint8.

Every bundled model, with SGD and with momentum: the update of each parameter whose gradient is
not a fusable product reads the integer accumulator (IntAccSGDUpdate / IntAccMomentumUpdate)
and the Dequantize that fed it is gone; ``--elementwise float``, qat and fp32 keep version 1's
float-gradient updates and the float32 mask. A Dequantize that something else still reads stays.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import rctc
from rctc import models
from rctc.ir import Graph
from rctc.ops import ACC_UPDATES, UPDATE_OPS
from rctc.options import CompileOptions
from rctc.passes import fuse_updates


def _updates(g: Graph) -> list:
    return [n for n in g.nodes if n.op_type in UPDATE_OPS]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
@pytest.mark.parametrize("name", models.READY)
def test_integer_graphs_update_from_integer_gradients(name: str, optimizer: str) -> None:
    g = rctc.compile(models.path(name), mode="rct", batch_size=2, optimizer=optimizer).graph
    ups = _updates(g)
    assert {n.meta["param"] for n in ups} == {p.name for p in g.params()}
    acc_op = ACC_UPDATES["IntSGDUpdate" if optimizer == "sgd" else "IntMomentumUpdate"]
    acc = [n for n in ups if n.op_type == acc_op]
    assert acc and all(n.op_type in (acc_op, "FusedIntUpdate", "FusedIntMomentumUpdate") for n in ups)
    for n in ups:
        assert all(v.producer is None or v.producer.op_type != "Dequantize" for v in n.inputs), n.name
    for n in acc:  # an integer gradient and its exponent, the gradient in the parameter's shape
        gq, ge = n.inputs[3], n.inputs[4]
        assert np.issubdtype(np.dtype(gq.dtype), np.signedinteger) and np.dtype(ge.dtype) == np.int32
        assert math.prod(gq.shape) == math.prod(n.inputs[0].shape)
    # the vector parameters (biases, norm scales / shifts) are among them
    vectors = {p.name for p in g.params() if len(p.shape) <= 1}
    assert vectors and vectors <= {n.meta["param"] for n in acc}
    assert g.values["sample_mask"].dtype == np.uint8


@pytest.mark.parametrize("name", ["mlp", "resnet8", "tiny_transformer"])
def test_float_graphs_keep_float_gradient_updates(name: str) -> None:
    g = rctc.compile(models.path(name), mode="rct", batch_size=2, elementwise="float").graph
    assert not any(n.op_type in ACC_UPDATES.values() for n in g.nodes)
    assert any(n.op_type == "IntSGDUpdate" for n in g.nodes)
    assert g.values["sample_mask"].dtype == np.float32
    for mode in ("fp32", "qat"):
        gm = rctc.compile(models.path(name), mode=mode, batch_size=2).graph
        assert gm.values["sample_mask"].dtype == np.float32


def _dequantize_then_update(also_output: bool) -> Graph:
    g = Graph()
    p = g.add_value("p", (4,), np.int8, "param", np.arange(4, dtype=np.int8))
    pe = g.add_value("p.exp", (), np.int32, "buffer", np.array(-6, np.int32))
    pb = g.add_value("p.bits", (), np.int32, "buffer", np.array(8, np.int32))
    acc = g.add_input("acc", (4,), np.int64)
    acc_e = g.add_input("acc_e", (), np.int32)
    lr = g.add_input("lr", (), np.float32)
    dq = g.add_node("Dequantize", [acc, acc_e], [("grad", (4,), np.float32)], {"alpha": 0.5}, domain="rctc")
    upd = g.add_node("IntSGDUpdate", [p, pe, pb, dq.outputs[0], lr], [("p.new", (4,), np.int8)],
                     {"rounding": "nearest", "weight_decay": 1e-3}, domain="rctc")
    upd.meta.update({"phase": "update", "param": "p"})
    g.state_updates["p"] = "p.new"
    g.outputs = [dq.outputs[0]] if also_output else []
    return g


@pytest.mark.parametrize("also_output", [False, True])
def test_dequantize_goes_only_when_nothing_else_reads_it(also_output: bool) -> None:
    g = _dequantize_then_update(also_output)
    fuse_updates.run(g, CompileOptions(elementwise="integer"))
    g.verify()
    (upd,) = [n for n in g.nodes if n.op_type in UPDATE_OPS]
    assert upd.op_type == "IntAccSGDUpdate"
    assert [v.name for v in upd.inputs] == ["p", "p.exp", "p.bits", "acc", "acc_e", "lr"]
    assert upd.attrs["alpha"] == 0.5 and upd.attrs["weight_decay"] == 1e-3 and upd.attrs["rounding"] == "nearest"
    assert g.state_updates["p"] == upd.outputs[0].name
    assert any(n.op_type == "Dequantize" for n in g.nodes) == also_output


def test_elementwise_float_leaves_the_update_alone() -> None:
    g = _dequantize_then_update(False)
    fuse_updates.run(g, CompileOptions(elementwise="float"))
    assert [n.op_type for n in g.nodes] == ["Dequantize", "IntSGDUpdate"]


@pytest.mark.parametrize("name", ["mlp", "resnet8"])
def test_momentum_graphs_train(name: str) -> None:
    m = rctc.compile(models.build(name), batch_size=2, optimizer="momentum", adjust_every=0)
    _, shape, dt = models.input_spec(name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, *shape)).astype(dt)  # 5 samples at batch 2: a padded last batch
    y = rng.integers(0, models.num_classes(name), 5)
    before = {p.name: p.data.copy() for p in m.graph.params()}
    s = m.train(x, y, epochs=1, shuffle=False, keep_last=True)
    assert math.isfinite(s["final_loss"])
    vectors = [p for p in m.graph.params() if len(p.shape) == 1]
    assert any(not np.array_equal(p.data, before[p.name]) for p in vectors)

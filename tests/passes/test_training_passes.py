"""The fp32 training pipeline's passes on tiny hand-built graphs and on models/ networks."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.compiler import compile_graph
from rctc.errors import RctcError, UnsupportedOpError
from rctc.ir import Graph
from rctc.models import build
from rctc.options import CompileOptions
from rctc.passes import add_loss, build_backward, canonicalize, mark_trainable
from rctc.runtime.trainer import LRSchedule, Trainer, run_training


def _tiny() -> Graph:
    g = Graph()
    x = g.add_input("x", (4, 3), np.float32)
    w = g.add_value("w", (3, 5), np.float32, "param", np.ones((3, 5), np.float32))
    a = g.add_node("Gemm", [x, w], [("a", (4, 5), np.float32)], {"transA": 0})
    i = g.add_node("Identity", [a.outputs[0]], [("i", (4, 5), np.float32)])
    s = g.add_node("Sum", [i.outputs[0], a.outputs[0], i.outputs[0]], [("s", (4, 5), np.float32)])
    d = g.add_node("Dropout", [s.outputs[0]], [("d", (4, 5), np.float32)], {"ratio": 0.25})
    sm = g.add_node("Softmax", [d.outputs[0]], [("probs", (4, 5), np.float32)], {"axis": -1})
    g.outputs = [sm.outputs[0]]
    g.meta["model_inputs"], g.meta["model_outputs"] = ["x"], ["probs"]
    return g


def test_canonicalize_tiny_graph() -> None:
    g = _tiny()
    canonicalize.run(g, CompileOptions())
    g.verify()
    ops = [n.op_type for n in g.nodes]
    assert "Identity" not in ops and "Sum" not in ops
    assert ops.count("Add") == 2
    drop = next(n for n in g.nodes if n.op_type == "Dropout")
    assert len(drop.outputs) == 2 and drop.attrs["ratio"] == 0.25
    assert drop.outputs[0].name == "d", "the replaced value keeps its name"
    assert g.meta["output_activation"] == "softmax" and g.meta["logits"] == "d"


def test_canonicalize_gemm_trans_a() -> None:
    g = Graph()
    x = g.add_input("x", (3, 4), np.float32)
    w = g.add_value("w", (3, 2), np.float32, "param", np.ones((3, 2), np.float32))
    n = g.add_node("Gemm", [x, w], [("y", (4, 2), np.float32)], {"transA": 1})
    g.outputs = [n.outputs[0]]
    g.meta["model_outputs"] = ["y"]
    canonicalize.run(g, CompileOptions())
    g.verify()
    assert [m.op_type for m in g.nodes] == ["Transpose", "Gemm"] and n.attrs["transA"] == 0


def test_mark_trainable_globs_and_errors() -> None:
    g = _tiny()
    canonicalize.run(g, CompileOptions())
    with pytest.raises(RctcError, match="matches no parameter"):
        mark_trainable.run(g, CompileOptions(freeze=["nope*"]))
    with pytest.raises(RctcError, match="no parameter is left trainable"):
        mark_trainable.run(g, CompileOptions(freeze=["w"]))


def test_batchnorm_running_stats_become_state() -> None:
    g, _ = compile_graph(build("resnet8"), CompileOptions(mode="fp32", batch_size=2))
    bn = [n for n in g.nodes if n.op_type == "BatchNormalization"]
    assert bn and all(len(n.outputs) == 3 for n in bn)
    for n in bn:
        mean, var = n.inputs[3], n.inputs[4]
        assert mean.kind == var.kind == "buffer" and not mean.trainable
        assert g.state_updates[mean.name] == n.outputs[1].name
    assert all(not v.trainable for v in g.values.values() if v.kind == "buffer")


def test_add_loss_mse_and_bad_output() -> None:
    g = _tiny()
    canonicalize.run(g, CompileOptions())
    mark_trainable.run(g, CompileOptions())
    add_loss.run(g, CompileOptions(loss="mse"))
    assert g.meta["target_input"] == "targets" and g.value("targets").shape == (4, 5)
    g2 = Graph()
    x = g2.add_input("x", (2, 3, 4), np.float32)
    r = g2.add_node("Relu", [x], [("y", (2, 3, 4), np.float32)])
    g2.outputs = [r.outputs[0]]
    g2.meta.update(model_outputs=["y"], logits="y")
    with pytest.raises(RctcError, match="cross-entropy needs"):
        add_loss.run(g2, CompileOptions())


def test_freeze_all_but_last_layer_prunes_backward() -> None:
    opts = CompileOptions(mode="fp32", batch_size=16, freeze=["conv*", "fc1.*"])
    g, _ = compile_graph(build("lenet"), opts)
    backward = [n for n in g.nodes if n.meta.get("phase") == "backward"]
    assert backward, "the last layer still has a backward"
    assert {n.meta["fwd"] for n in backward} <= {"loss", "fc2"}
    assert set(g.meta["param_grads"]) == {"fc2.weight", "fc2.bias"}
    assert not any(n.op_type.startswith("ConvGrad") for n in g.nodes)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    t = Trainer(g, seed=0)
    first = t.evaluate(x, y)["loss"]
    run_training(t, x, y, epochs=20, steps=None, schedule=LRSchedule(0.2))
    assert t.evaluate(x, y)["loss"] < first - 0.1


def test_frozen_prefix_has_no_backward() -> None:
    g, _ = compile_graph(build("lenet"), CompileOptions(mode="fp32", batch_size=4, freeze=["conv1.*"]))
    assert not any(n.meta.get("fwd") in ("conv1", "relu1") for n in g.nodes if n.meta.get("phase") == "backward")
    assert not any(n.op_type == "ConvGradInput" and n.meta["fwd"] == "conv2" for n in g.nodes)


def test_missing_gradient_rule_names_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(build_backward.RULES, "Cast")  # every float op has a rule now: pretend one has none
    g = Graph()
    x = g.add_input("x", (2, 4), np.float32)
    w = g.add_value("w", (4, 3), np.float32, "param", np.ones((4, 3), np.float32))
    m = g.add_node("MatMul", [x, w], [("h", (2, 3), np.float32)])
    e = g.add_node("Cast", [m.outputs[0]], [("logits", (2, 3), np.float32)], {"to": 1}, name="the_cast")
    g.outputs = [e.outputs[0]]
    g.meta.update(model_inputs=["x"], model_outputs=["logits"])
    for p in (canonicalize, mark_trainable, add_loss):
        p.run(g, CompileOptions())
    with pytest.raises(UnsupportedOpError, match=r"Cast \(the_cast\)"):
        build_backward.run(g, CompileOptions())


def test_momentum_optimizer_adds_velocity_buffers() -> None:
    g, _ = compile_graph(build("mlp"), CompileOptions(mode="fp32", batch_size=4, optimizer="momentum"))
    ups = [n for n in g.nodes if n.op_type == "MomentumUpdate"]
    assert len(ups) == 6
    for n in ups:
        vel = n.inputs[2]
        assert vel.kind == "buffer" and g.state_updates[vel.name] == n.outputs[1].name
    assert g.value("lr").shape == ()

"""Typed value roles: the passes give each value its role (gradient, optimizer state, integer
view, exponent, bits), renames keep them, the .rct round trip keeps them, and a graph saved
before roles existed gets the roles its consumers read."""

from __future__ import annotations

import numpy as np
import pytest

import rctc
from rctc import models
from rctc.api import CompiledModel
from rctc.ir import BITS, EXPONENT, GRAD, INT_VIEW, OPTIMIZER_STATE, Graph, IRError, Role
from rctc.legacy import assign_roles, needs_roles
from rctc.rct_format import load_rct, save_rct


def _roles(g: Graph) -> dict[str, tuple[str, str]]:
    return {v.name: (r.kind, r.of) for v in g.values.values() if (r := v.role) is not None}


def test_rct_graph_roles() -> None:
    g = rctc.compile(str(models.path("lenet")), mode="rct", batch_size=2, optimizer="momentum").graph
    for p in g.params(trainable_only=True):
        assert g.with_role(EXPONENT, p.name).kind == "buffer" and g.with_role(BITS, p.name).data.dtype == np.int32
        vel = g.with_role(OPTIMIZER_STATE, p.name)
        assert vel.shape == p.shape and g.with_role(BITS, vel.name) is not None
    assert g.role_owners(INT_VIEW)  # quantised activations and errors know what they quantise
    assert all(v.producer.op_type in ("QuantAct", "QuantGrad") for v in g.values.values() if v.has_role(INT_VIEW))
    ints = [n for n in g.nodes if n.op_type.startswith("Int") and "lowered_from" in n.meta]
    assert ints and all(n.name == f"{n.meta['lowered_from']}.int" for n in ints)


def test_fp32_graph_knows_its_gradients() -> None:
    g = rctc.compile(str(models.path("mlp")), mode="fp32", batch_size=2).graph
    for p, gname in g.meta["param_grads"].items():
        assert g.value(gname).has_role(GRAD, p)
    with pytest.raises(IRError, match="no bits value"):
        g.with_role(BITS, "fc1.weight")


def test_rename_keeps_the_owner() -> None:
    g = Graph()
    w = g.add_value("w", (2,), np.float32, "param", np.zeros(2, np.float32))
    e = g.add_value("w.exp", (), np.int32, "buffer", np.zeros((), np.int32))
    e.role = Role(EXPONENT, "w")
    g.rename_value(w, "weight")
    assert e.role == Role(EXPONENT, "weight") and g.with_role(EXPONENT, "weight") is e
    with pytest.raises(IRError, match="unknown value role"):
        Role("colour", "w")


def test_roles_survive_the_rct_file_and_old_files_get_them(tmp_path) -> None:  # noqa: ANN001
    m = rctc.compile(str(models.path("lenet")), mode="rct", batch_size=2, optimizer="momentum")
    save_rct(m.graph, tmp_path / "m.rct")
    g = load_rct(tmp_path / "m.rct")
    assert _roles(g) == _roles(m.graph)
    # a file from before roles: none stored; what the analyses read is recovered
    want = {k: v for k, v in _roles(g).items()
            if v[0] in (EXPONENT, BITS, OPTIMIZER_STATE) and g.values[k].kind != "temp"}
    want.update({gname: (GRAD, p) for p, gname in g.meta["param_grads"].items() if gname in g.values})
    lowered = {n.name: n.meta["lowered_from"] for n in g.nodes if "lowered_from" in n.meta}
    for v in g.values.values():
        v.role = None
    for n in g.nodes:
        n.meta.pop("lowered_from", None)
    assert needs_roles(g)
    assign_roles(g)
    assert _roles(g) == want
    assert {n.name: n.meta["lowered_from"] for n in g.nodes if "lowered_from" in n.meta} == lowered
    assert CompiledModel(g).estimate()["predicted"] == m.estimate()["predicted"]

"""plan_memory: liveness by hand on a tiny graph, slot sizes per mode, and nothing but meta changes."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from rctc import models
from rctc.analysis.memory import compute_plan
from rctc.compiler import compile_graph
from rctc.ir import Graph
from rctc.options import CompileOptions
from rctc.pass_manager import PassManager
from rctc.passes import plan_memory
from rctc.passes.registry import PASSES, PIPELINES


def _fingerprint(g: Graph) -> str:
    """Everything of a graph except its meta: nodes, attrs, values, data, state updates."""
    h = hashlib.sha256()
    h.update(str(g).encode())
    for n in g.nodes:
        h.update(repr((n.name, n.op_type, n.domain, sorted(n.attrs), json.dumps(n.meta, sort_keys=True,
                                                                               default=str))).encode())
    for v in g.values.values():
        h.update(repr((v.name, v.shape, str(v.dtype), v.kind, v.trainable, sorted(v.meta))).encode())
        if v.data is not None:
            h.update(np.ascontiguousarray(v.data).tobytes())
    h.update(repr(sorted(g.state_updates.items())).encode())
    return h.hexdigest()


@pytest.mark.parametrize("mode", ["rct", "qat", "fp32"])
def test_plan_memory_changes_only_meta(mode: str) -> None:
    options = CompileOptions(mode=mode, batch_size=4)
    g, _ = compile_graph(models.build("lenet"), options)
    assert PIPELINES[mode][-1] == "plan_memory" and PASSES["plan_memory"] is plan_memory.run
    stored = g.meta.pop("memory_plan")
    before = _fingerprint(g)
    meta_before = {k: v for k, v in g.meta.items() if k != "_node_names"}
    PassManager(PASSES).run(g, ["plan_memory"], options)
    assert _fingerprint(g) == before
    assert {k: v for k, v in g.meta.items() if k not in ("_node_names", "memory_plan")} == meta_before
    assert json.loads(json.dumps(g.meta["memory_plan"])) == g.meta["memory_plan"] == stored


def test_liveness_by_hand() -> None:
    """x -> a = Relu(x) -> b = Relu(a) -> c = Add(a, b) -> d = Relu(c) (output); 4 float32 = 16 B each."""
    g = Graph("tiny")
    x = g.add_input("x", (4,), np.float32)
    g.add_value("k", (2,), np.float32, "const", np.zeros(2, np.float32))
    a = g.add_node("Relu", [x], [("a", (4,), np.float32)]).outputs[0]
    b = g.add_node("Relu", [a], [("b", (4,), np.float32)]).outputs[0]
    c = g.add_node("Add", [a, b], [("c", (4,), np.float32)]).outputs[0]
    d = g.add_node("Relu", [c], [("d", (4,), np.float32)]).outputs[0]
    g.outputs = [d]
    g.verify()
    plan = compute_plan(g)
    # live: #0 {a}; #1 {a, b}; #2 {a, b, c} (a and b die after #2); #3 {c, d}
    assert plan["transient_peak_bytes"] == 48 and plan["peak_node"] == "Add"
    assert plan["input_bytes"] == 16 and plan["buffer_bytes"] == 8
    assert plan["peak_bytes"] == 48 + 16 + 8
    assert plan["transient_at_peak"]["activations"] == 48


def _elements(g: Graph, pred) -> int:
    return sum(math.prod(p.shape) for p in g.params() if pred(p))


def test_parameter_slots_per_mode() -> None:
    opts = {"batch_size": 4, "bits": 8, "max_bits": 16}
    rct, _ = compile_graph(models.build("lenet"), CompileOptions(mode="rct", **opts))
    n = _elements(rct, lambda p: True)
    plan = rct.meta["memory_plan"]["parameters"]
    assert plan["elements"] == n
    assert plan["slot_bytes"] == plan["bytes_at_max_bits"] == 2 * n  # 16 bits per value, packed
    assert plan["bytes_now"] == n  # 8 bits now
    fp32, _ = compile_graph(models.build("lenet"), CompileOptions(mode="fp32", **opts))
    assert fp32.meta["memory_plan"]["parameters"]["bytes_now"] == 4 * n
    qat, _ = compile_graph(models.build("lenet"), CompileOptions(mode="qat", **opts))
    weights = _elements(qat, lambda p: len(p.shape) > 1)  # the fake-quantised operands of the products
    q = qat.meta["memory_plan"]["parameters"]
    assert q["slot_bytes"] == 4 * n and q["quantised_copy_bytes"] == weights
    assert q["bytes_now"] == 4 * n + weights


def test_momentum_state_is_optimizer_memory() -> None:
    for mode in ("fp32", "rct"):
        g, _ = compile_graph(models.build("mlp"), CompileOptions(mode=mode, batch_size=4, optimizer="momentum"))
        n = _elements(g, lambda p: p.trainable)
        per_value = 4 if mode == "fp32" else 2  # float32 velocity / 16-bit integer velocity slot
        opt = g.meta["memory_plan"]["optimizer_bytes"]
        assert per_value * n <= opt <= per_value * n + 8 * len(g.params())  # + velocity exponents / bits

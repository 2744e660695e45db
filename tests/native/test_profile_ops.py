"""Per-node profiling of the generated step (``--profile-ops`` on the native backend).

The profiling build times each node block with the C step's own monotonic clock: the op types
reported are the graph's (every C node's type, no segment pseudo-entry besides the boundary), each
C node gets its own time, the node times add up to most of the segments' time (the rest, the
copies and the call, is the ``C segment boundary`` entry), and the trained state is the one of the
unprofiled native run and of the numpy run, bit for bit. The normal build has no timers at all.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import rctc
from rctc.models import path as model_path
from rctc.native.codegen import NativeStep, generate
from rctc.native.codegen.runner import load_programs
from rctc.native.executor import NativeExecutor, _CSegment
from rctc.runtime.controller import attach_controller
from rctc.runtime.trainer import Trainer
from tests.native.test_backend import assert_same_run, batches


def _train(name: str, backend: str, profile: bool, steps: int = 3, batch: int = 4) -> dict[str, Any]:
    g = rctc.compile(model_path(name), mode="rct", batch_size=batch, adjust_every=1, seed=3).graph
    ex = NativeExecutor(g, 2) if backend == "native" else None
    t = Trainer(g, seed=3, executor=ex)
    attach_controller(t)
    if profile:
        t.executor.op_times = {}
        if ex is not None:
            ex.node_times = {}
    t0 = time.perf_counter()
    recs = [t.train_step(x, y, m, 0.05) for x, y, m in batches(g, steps)]
    wall = time.perf_counter() - t0
    state = {v.name: v.data for v in g.values.values() if v.kind in ("param", "buffer", "const")}
    return {"loss": [r.loss for r in recs], "stats": [r.stats for r in recs], "state": state,
            "changes": list(g.meta.get("bit_changes", [])), "executor": t.executor, "graph": g, "wall": wall}


@pytest.mark.parametrize("name", ["lenet", "resnet8"])
def test_profiled_native_run_is_bit_identical(name: str) -> None:
    prof = _train(name, "native", True)
    assert_same_run(prof, _train(name, "native", False))
    assert_same_run(prof, _train(name, "numpy", False))


def test_profile_reports_the_graph_op_types_per_node() -> None:
    run = _train("resnet8", "native", True, steps=2)
    ex: NativeExecutor = run["executor"]
    times, per_node = ex.op_times, ex.node_times
    assert times is not None and per_node is not None
    segs = [p for plan in ex._plans.values() for p in plan.parts if isinstance(p, _CSegment)]
    c_nodes = [n for s in segs for n in s.nodes]
    assert c_nodes and ex.fallbacks() == 0
    graph_ops = {n.op_type for n in run["graph"].nodes}
    assert not any(k.startswith("C segment ") and k != "C segment boundary" for k in times)
    assert set(times) - {"C segment boundary"} <= graph_ops
    assert {n.op_type for n in c_nodes} <= set(times)
    assert set(per_node) == {n.name for n in c_nodes}
    assert all(v >= 0.0 for v in per_node.values())
    conv = [n.name for n in c_nodes if n.op_type == "IntConv"]
    assert all(per_node[n] > 0.0 for n in conv)  # a convolution takes longer than the clock's step
    for op in {n.op_type for n in c_nodes}:  # op times are the sums of their nodes' times
        assert times[op] >= sum(per_node[n.name] for n in c_nodes if n.op_type == op) * (1 - 1e-9)
    inside, boundary = sum(per_node.values()), times["C segment boundary"]
    assert boundary >= 0.0
    assert inside > 0.5 * (inside + boundary), (inside, boundary)  # the nodes are most of the C time
    assert sum(times.values()) <= run["wall"]  # everything timed is inside the steps


def test_normal_build_has_no_timers(native_env: dict[str, str]) -> None:
    g = rctc.compile(model_path("mlp"), mode="rct", batch_size=2).graph
    nodes = [n for n in g.nodes if n.op_type == "IntGemm"][:1]
    prog = generate(g, nodes, [o.name for n in nodes for o in n.outputs])
    assert "#ifdef RCTC_PROFILE" in prog.source
    plain = NativeStep(prog, {}, env=native_env)
    assert plain.node_ns() is None and not hasattr(plain.lib, "rctc_model_prof")
    timed = NativeStep(prog, {}, lib=load_programs([prog], native_env, profile=True))
    x = {v.name: np.ones(v.shape, v.dtype) for v in nodes[0].inputs if v.name in prog.inputs}
    for name in prog.state:
        timed.view(name)[...] = 1
        plain.view(name)[...] = 1
    got, want = timed.run(x), plain.run(x)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got)
    ns = timed.node_ns()
    assert ns is not None and ns.shape == (len(nodes) + 1,) and ns.dtype == np.uint64

"""The native backend's pieces: the partition, shared programs, the energy counter, eval / predict.

* partition: every node once, in an order where each value is made before it is read, fewer
  segments than the graph order gives (the reorder pays), no C node a refused one;
* two models of one graph share the cached shared object (and its static blocks): trained
  interleaved, each still equals its numpy run;
* the energy counter measures the same counts on both backends;
* evaluate / predict (the inference schedule: BatchNorm on running statistics) equal numpy's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_backend import BATCH, LR, batches

import rctc
from rctc.analysis.counter import attach_counter
from rctc.models import path as model_path
from rctc.native.executor import NativeExecutor
from rctc.native.partition import host_reason, partition
from rctc.runtime.executor import Executor
from rctc.runtime.trainer import Trainer


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread() -> Any:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _graph(name: str) -> Any:
    return rctc.compile(model_path(name), mode="rct", batch_size=BATCH, adjust_every=1, seed=3).graph


def _step_outputs(g: Any) -> list[str]:
    return list(dict.fromkeys([g.meta["loss"], g.meta["logits"], *g.state_updates.values()]))


@pytest.mark.parametrize("name", ["resnet8", "tiny_transformer"])
def test_partition_is_a_valid_schedule_with_fewer_cuts(name: str) -> None:
    g = _graph(name)
    nodes = Executor(g).nodes_for(_step_outputs(g))
    segs = partition(nodes)
    order = [n for s in segs for n in s.nodes]
    assert sorted(n.name for n in order) == sorted(n.name for n in nodes)
    made = {v.name for v in g.values.values() if v.kind != "temp"}
    for n in order:
        assert all(v is None or v.name in made for v in n.inputs), n.name
        made.update(o.name for o in n.outputs)
    for s in segs:
        assert all((host_reason(n, True) is None) == (s.kind == "c") for n in s.nodes)
    kinds = ["c" if host_reason(n, True) is None else "host" for n in nodes]
    runs_in_graph_order = 1 + sum(a != b for a, b in zip(kinds, kinds[1:]))
    assert len(segs) < runs_in_graph_order
    assert all(a.kind != b.kind for a, b in zip(segs, segs[1:]))


def _trainer(g: Any, native: bool) -> Trainer:
    from rctc.runtime.controller import attach_controller

    t = Trainer(g, seed=3, executor=NativeExecutor(g, 2) if native else None)
    attach_controller(t)
    return t


def _state(g: Any) -> dict[str, np.ndarray]:
    return {v.name: v.data for v in g.values.values() if v.kind in ("param", "buffer")}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_two_models_sharing_one_program_each_equal_numpy() -> None:
    ref_g = _graph("lenet")
    ref = _trainer(ref_g, False)
    data = batches(ref_g, 3)
    ref_loss = [ref.train_step(x, y, m, LR).loss for x, y, m in data]
    g1, g2 = _graph("lenet"), _graph("lenet")
    t1, t2 = _trainer(g1, True), _trainer(g2, True)
    l1, l2 = [], []
    for i, (x, y, m) in enumerate(data):  # t2 lags one step behind t1: the blocks switch owner each step
        l1.append(t1.train_step(x, y, m, LR).loss)
        if i:
            l2.append(t2.train_step(*data[i - 1], LR).loss)
    l2.append(t2.train_step(*data[-1], LR).loss)
    assert l1 == ref_loss and l2 == ref_loss
    _same(_state(g1), _state(ref_g))
    _same(_state(g2), _state(ref_g))


def test_energy_counter_measures_the_same_on_both_backends() -> None:
    reports = []
    for native in (False, True):
        g = _graph("mlp")
        t = _trainer(g, native)
        counter = attach_counter(t)
        for x, y, m in batches(g, 2):
            t.train_step(x, y, m, LR)
        rep = counter.report()["measured"]
        reports.append((rep["counts"], rep["energy_pj_total"]))
    assert reports[0] == reports[1]
    assert reports[0][0]["macs"]  # something was counted


@pytest.mark.parametrize("name", ["resnet8", "lenet"])
def test_evaluate_and_predict_equal_numpy(name: str) -> None:
    outs = []
    for native in (False, True):
        g = _graph(name)
        t = _trainer(g, native)
        for x, y, m in batches(g, 2):  # trained a little: the running statistics moved
            t.train_step(x, y, m, LR)
        xs = np.concatenate([x for x, _, _ in batches(g, 3, seed=5)])[: 3 * BATCH - 1]  # a padded last batch
        ys = np.concatenate([y for _, y, _ in batches(g, 3, seed=5)])[: 3 * BATCH - 1]
        outs.append((t.evaluate(xs, ys), t.predict(xs)))
        if native:
            in_c, total = t.executor.share_in_c(list(g.meta["model_outputs"]), training=False)
            assert 0 < in_c < total
    (ev_a, pr_a), (ev_b, pr_b) = outs
    assert ev_a == ev_b
    assert pr_a.keys() == pr_b.keys()
    for k in pr_a:
        assert pr_a[k].dtype == pr_b[k].dtype and np.array_equal(pr_a[k], pr_b[k]), k


def test_a_segment_a_c_kernel_refuses_runs_on_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C step that returns a kernel's refusal (here simulated at step 1, before the C runs, as a
    refusing kernel returns before the state is written) makes that step's segments run on the
    numpy kernels: the run still equals numpy's, and the next steps are C again."""
    from rctc.errors import RctcError
    from rctc.native.codegen.runner import NativeStep

    real = NativeStep.call

    def refuse_step_1(self: NativeStep, seed: int, step: int, lr: float) -> None:
        if step == 1:
            raise RctcError("native step failed with kernel code -2 (simulated)")
        real(self, seed, step, lr)

    monkeypatch.setattr(NativeStep, "call", refuse_step_1)
    got = train_run("resnet8", True, steps=3)
    from rctc.native.executor import _CSegment

    plan = got[2].plan_for(_step_outputs(got[2].graph), True)
    n_segments = sum(isinstance(p, _CSegment) for p in plan.parts)
    assert n_segments >= 1 and got[2].fallbacks() == n_segments  # every C segment of step 1, no other step
    ref = train_run("resnet8", False, steps=3)
    assert got[0] == ref[0]
    _same(got[1], ref[1])


def train_run(name: str, native: bool, steps: int = 2) -> tuple[list[float], dict[str, np.ndarray], Any]:
    g = _graph(name)
    t = _trainer(g, native)
    losses = [t.train_step(x, y, m, LR).loss for x, y, m in batches(g, steps)]
    return losses, _state(g), t.executor


@pytest.mark.parametrize("options", [{"elementwise": "float"}, {"optimizer": "momentum"}])
def test_any_rct_graph_trains_identically(options: dict[str, str]) -> None:
    """rct graphs with float islands (v1's element-wise lowering: partly on numpy) or momentum
    updates (all in C): what maps runs in C, the rest on numpy, and the run equals numpy's."""
    runs = []
    for native in (False, True):
        g = rctc.compile(model_path("lenet"), mode="rct", batch_size=BATCH, adjust_every=1, seed=3, **options).graph
        t = _trainer(g, native)
        runs.append(([t.train_step(x, y, m, LR).loss for x, y, m in batches(g, 3)], _state(g), t.executor))
    assert runs[0][0] == runs[1][0]
    _same(runs[1][1], runs[0][1])
    g_out = runs[1][2].graph
    in_c, total = runs[1][2].share_in_c(_step_outputs(g_out))
    assert 0 < in_c < total
    if "optimizer" in options:  # the host keeps only the input's quantiser and the outputs' dequantisers
        host = [p.node.op_type for p in runs[1][2].plan_for(_step_outputs(g_out), True).parts if hasattr(p, "node")]
        assert set(host) == {"QuantAct", "Dequantize"}, host

"""The native code generator against the numpy reference, bit for bit (rctc.native.codegen).

A generated step over the MLP's whole integer training step (forward products, requantise with
its nearest and stochastic roundings, ReLU and its backward, the integer cross-entropy loss and
its gradient with the uint8 sample mask, the data-gradient products, transposes, bias sums, the
three fused weight updates and the three bias updates from their int64 accumulators, all with
their stochastic rounding) is built with the kernel library and run through ctypes. Every value
it hands on and the whole state must equal the numpy runtime's (dtype, shape, bits, exponents)
at several (seed, step) keys, full and padded batches, and the parameters after 4 chained steps
updated only in C must equal the numpy run's. Only the host's boundary stays outside C (the
input quantiser and the Dequantize of the loss and logits for the metrics); the whole graph is
refused with one line naming those. The step's bitwidth-controller statistics block (one entry
per fused and bias update) equals the numpy kernels' statistics.
"""

from __future__ import annotations

import numpy as np
import pytest

import rctc
from rctc.bitwidth_rule import STATS_KEY
from rctc.errors import UnsupportedOpError
from rctc.ir import Graph
from rctc.native.codegen import EMITTERS, NativeStep, generate
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext
from tests.native.codegen_cases import assert_same, boundary, mapped

MLP = "models/mlp.onnx"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return rctc.compile(MLP, mode="rct", elementwise="integer", batch_size=8, optimizer="sgd").graph


def _mask(real: int | str) -> np.ndarray:
    """The uint8 sample mask (as the graph asks) of a batch of 8 whose first ``real`` rows are
    samples, or of the 0/1 pattern ``real`` ("10110..."; padded rows between samples)."""
    if isinstance(real, str):
        return np.array([int(c) for c in real], np.uint8)
    return (np.arange(8) < real).astype(np.uint8)


def _reference(g: Graph, seed: int, step: int, real: int | str = 8, lr: float = 0.05,
               ctx: KernelContext | None = None) -> dict[str, np.ndarray]:
    """Every value of one numpy training step (no state written back); the mask as :func:`_mask`."""
    rng = np.random.default_rng(seed + 100 * step)
    feeds = {"x": rng.standard_normal((8, 64)).astype(np.float32) * (1 + step),
             "labels": rng.integers(0, 10, 8), "sample_mask": _mask(real), "lr": np.float32(lr)}
    names = [o.name for n in g.nodes for o in n.outputs]
    ctx = ctx or KernelContext(training=True, seed=seed, step=step)
    return {**Executor(g).run(feeds, names, ctx), **feeds}


def test_integer_nodes_bit_identical_to_numpy(graph: Graph, native_env: dict[str, str]) -> None:
    nodes = mapped(graph)
    assert {"IntGemm", "Requantize", "IntRelu", "IntReluGrad", "Transpose", "IntReduceSum", "FusedIntUpdate",
            "IntAccSGDUpdate", "IntSoftmaxCrossEntropy", "IntSoftmaxCrossEntropyGrad"} <= {n.op_type for n in nodes}
    assert {n.op_type for n in graph.nodes} - set(EMITTERS) == {"QuantAct", "Dequantize"}  # the host's boundary
    # stochastic requantise nodes are in the slice, so the Philox stream is exercised
    assert any(n.op_type == "Requantize" and n.attrs.get("rounding") == "stochastic" for n in nodes)
    outs = boundary(graph, nodes)
    assert {"logits.acc", "loss.q", "loss.e"} <= set(outs)
    outs += ["grad::logits.q__6", "grad::logits.e__7", "grad::fc1.bias.acc", "grad::fc1.bias.e"]
    prog = generate(graph, nodes, outs)
    assert set(prog.inputs) == {"x.q", "x.e", "labels", "sample_mask"}
    assert prog.slots["sample_mask"].dtype == np.uint8
    # intermediates (the accumulators, the requantised errors) share arena bytes: reuse is exercised
    assert prog.arena_bytes < sum(-(-s.nbytes // 64) * 64 for s in prog.slots.values() if s.region == "arena")
    params = {p.name for p in graph.params()}
    assert set(prog.updates) == params  # every update runs in C: weights fused, biases from their accumulators
    stored = {nm: graph.values[nm].data for nm in prog.state}
    native = NativeStep(prog, stored, env=native_env)
    # full batches and padded ones (the mask drops rows 5..7, 1..7, all of them, rows between samples)
    for seed, step, real in ((0, 0, 8), (7, 3, 8), (2**40 + 5, 11, 8), (0, 0, 5), (7, 3, 1), (3, 2, 0),
                             (9, 4, "01101001")):
        ref = _reference(graph, seed, step, real)
        native.load_state(stored)
        got = native.run({nm: ref[nm] for nm in prog.inputs}, seed=seed, step=step, lr=0.05)
        assert_same(got, ref, outs)
        want = {nm: ref[prog.updates[nm]] if nm in prog.updates else stored[nm] for nm in prog.state}
        assert_same(got, want, prog.state)
        kept = _mask(real) != 0
        if not kept.all():  # padded rows carry no error
            dx = got["grad::logits.q__6"]
            assert not dx[~kept].any() and (not kept.any() or dx[kept].any())
    # a different step draws different stochastic roundings: the comparison can fail
    seed, step = 7, 3
    ref = _reference(graph, seed, step)
    native.load_state(stored)
    a = native.run({nm: ref[nm] for nm in prog.inputs}, seed=seed, step=step + 1, lr=0.05)
    assert not all(np.array_equal(a[o], ref[o]) for o in outs)
    assert not np.array_equal(a["fc1.weight"], ref["fc1.weight.q.new.fused"])

    # N chained steps: the parameters evolve only in C; the numpy run supplies the quantised input
    # (the host's QuantAct), the last step's batch is padded
    ex, seed, lr = Executor(graph), 5, 0.05
    saved = {v.name: v.data.copy() for v in graph.values.values() if v.kind in ("param", "buffer")}
    native.load_state(stored)
    try:
        for step in range(4):
            rng = np.random.default_rng(step)
            feeds = {"x": rng.standard_normal((8, 64)).astype(np.float32), "labels": rng.integers(0, 10, 8),
                     "sample_mask": _mask(8 if step < 3 else 6), "lr": np.float32(lr)}
            before = {nm: graph.values[nm].data.copy() for nm in prog.state}
            ref = ex.train_step(feeds, ["x.q", "x.e"], KernelContext(training=True, seed=seed, step=step))
            # the C parameters carry over from the previous step; the rest comes from the numpy state
            native.load_state(before | ({nm: got[nm] for nm in prog.updates} if step else {}))
            got = native.run({**feeds, **ref}, seed=seed, step=step, lr=lr)
        for nm in prog.updates:
            assert_same(got, {nm: graph.values[nm].data}, [nm])
            assert not np.array_equal(got[nm], saved[nm])
    finally:
        for nm, data in saved.items():
            graph.values[nm].data = data


def test_update_statistics_block_equals_numpy(graph: Graph, native_env: dict[str, str]) -> None:
    """The step's rctc_stats block (A, S, g per weight and bias update, rctc/bitwidth_rule.py)
    gives the controller statistics the numpy kernels record, at learning rates from tiny to
    saturating, full and padded batches."""
    nodes = mapped(graph)
    prog = generate(graph, nodes, boundary(graph, nodes))
    params = [n.meta["param"] for n in nodes if n.op_type in ("FusedIntUpdate", "IntAccSGDUpdate")]
    assert [p for p, _ in prog.stats] == params and len(params) == 6
    stored = {nm: graph.values[nm].data for nm in prog.state}
    native = NativeStep(prog, stored, env=native_env)
    saturated = moved = 0
    for seed, step, lr, real in ((0, 0, 0.05, 8), (7, 3, 1e-4, 5), (3, 1, 40.0, "10110111")):
        ctx = KernelContext(training=True, seed=seed, step=step)
        ref = _reference(graph, seed, step, real=real, lr=lr, ctx=ctx)
        native.load_state(stored)
        native.run({nm: ref[nm] for nm in prog.inputs}, seed=seed, step=step, lr=lr)
        want = {p: ctx.stats[STATS_KEY][p] for p in params}
        assert native.update_stats() == want, (seed, step, lr)
        saturated += sum(s.s for s in want.values())
        moved += sum(s.g > 0 for s in want.values())
    assert saturated > 0 and moved >= 12  # non-zero counts and Gavgs are among those compared


def test_arena_plan_never_overlaps_live_values(graph: Graph) -> None:
    nodes = mapped(graph)
    prog = generate(graph, nodes, [nodes[-1].outputs[0].name])
    produced = {o.name: i for i, n in enumerate(nodes) for o in n.outputs}
    last = {v.name: i for i, n in enumerate(nodes) for v in n.inputs if v is not None}
    arena = {nm: s for nm, s in prog.slots.items() if s.region == "arena"}
    span = {nm: (produced.get(nm, -1), len(nodes) if nm in prog.outputs else last.get(nm, produced.get(nm, -1)))
            for nm in arena}
    for a in arena:
        for b in arena:
            if a < b and span[a][0] <= span[b][1] and span[b][0] <= span[a][1]:
                sa, sb = arena[a], arena[b]
                assert sa.offset + sa.nbytes <= sb.offset or sb.offset + sb.nbytes <= sa.offset, (a, b)
    assert max(s.offset + s.nbytes for s in arena.values()) <= prog.arena_bytes
    assert prog.arena_bytes < sum(-(-s.nbytes // 64) * 64 for s in arena.values())  # bytes are reused
    assert "malloc" not in prog.source and "float" not in prog.source and "double" not in prog.source


def test_whole_step_refused_naming_the_ops(graph: Graph) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        generate(graph, graph.nodes)
    msg = str(info.value)
    assert "\n" not in msg
    assert "op(s) Dequantize, QuantAct (first:" in msg  # the host boundary only: loss and updates map
    assert "'x/quant'" in msg and "numpy backend" in msg


def test_float_value_refused(graph: Graph) -> None:
    tr = next(n for n in graph.nodes if n.op_type == "Dequantize")
    tr.op_type, saved = "Transpose", tr.op_type  # a float tensor through a mapped op type
    try:
        with pytest.raises(UnsupportedOpError, match="integer only"):
            generate(graph, [tr])
    finally:
        tr.op_type = saved

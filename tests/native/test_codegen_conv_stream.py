"""Streamed data gradients (rctc.analysis.arena.streamable, native/codegen/emit/conv_stream.py):
an IntConvGradInput and its bias-free Requantize as a device step generates them, the
accumulator given no slot and formed a block of input channels at a time, twice, run by the C
bit for bit as numpy runs the two nodes. The geometries are ResNet-8's own (3x3 stride 1 and
2, 1x1 stride 2, int32 and, with int16 weights, int64 accumulators; several channel blocks and
bands of rows), stochastic and nearest rounding; and in a whole device step each streamed
pair's conv inputs live until its Requantize, and the conv weight's update comes after it."""

from __future__ import annotations

import numpy as np
import pytest

import rctc
from rctc.analysis import arena as A
from rctc.ir import Graph
from rctc.native.codegen import NativeStep, generate
from rctc.node_ids import assign_node_ids
from rctc.ops import UPDATE_OPS
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext
from tests.native.codegen_cases import assert_same


@pytest.fixture(scope="module", params=[8, 16], ids=["int8-weights", "int16-weights"])
def resnet8(request):
    return rctc.compile("models/resnet8.onnx", mode="rct", batch_size=1, max_bits=request.param).graph


def _pair(g0, acc: str, rounding: str):
    """A graph of the producer of ``acc`` and its Requantize, random feeds for its inputs."""
    conv = g0.value(acc).producer
    rq = next(n for n in g0.nodes if any(v is not None and v.name == acc for v in n.inputs))
    g = Graph(name="pair")
    rng = np.random.default_rng(len(acc))
    feeds, ins = {}, []
    for v in conv.inputs:
        arr = rng.integers(-127, 128, v.shape).astype(v.dtype) if v.shape else np.array(-6, v.dtype)
        ins.append(g.add_input(v.name, v.shape, v.dtype))
        feeds[v.name] = arr
    g.add_node(conv.op_type, ins, [(o.name, o.shape, o.dtype) for o in conv.outputs], dict(conv.attrs), name=conv.name)
    g.add_node("Requantize", [g.value(o.name) for o in conv.outputs], [(o.name, o.shape, o.dtype) for o in rq.outputs],
               dict(rq.attrs) | {"rounding": rounding}, name=rq.name)
    assign_node_ids(g)
    return g, feeds, [o.name for o in rq.outputs]


def test_streamed_pairs_bit_identical_to_numpy(resnet8, native_env) -> None:
    nodes = A.device_nodes(resnet8)
    streamed = A.device_layout(resnet8).streamed
    assert len(streamed) >= 4  # the large data gradients of ResNet-8 are streamed
    strides = set()
    for acc in sorted(streamed):
        strides.add(tuple(resnet8.value(acc).producer.attrs.get("strides") or (1, 1)))
        for rounding in ("stochastic", "nearest"):
            g, feeds, outs = _pair(resnet8, acc, rounding)
            prog = generate(g, g.nodes, outs, in_place_updates=True)
            assert acc not in prog.slots and "rctc_col2im_s" in prog.source, acc  # never whole
            native = NativeStep(prog, {}, env=native_env)
            for seed, step in ((3, 0), (11, 5)):
                ref = Executor(g).run(feeds, outs, KernelContext(training=True, seed=seed, step=step))
                assert_same(native.run(feeds, seed=seed, step=step), ref, outs)
    assert strides == {(1, 1), (2, 2)}
    # in the device step: the conv's inputs outlive it to its Requantize; the weight's update follows
    pos = {n.name: i for i, n in enumerate(nodes)}
    lay = A.device_layout(resnet8)
    for acc in streamed:
        conv = resnet8.value(acc).producer
        rq = next(n for n in nodes if any(v is not None and v.name == acc for v in n.inputs))
        w = conv.inputs[2].name
        upd = [n for n in nodes if n.op_type in UPDATE_OPS and n.inputs[0].name == w]
        assert all(pos[u.name] > pos[rq.name] for u in upd), (acc, w)
        dy = conv.inputs[0].name
        later = [n for n in nodes if pos[n.name] > pos[conv.name] and pos[n.name] <= pos[rq.name]]
        region, off = lay.offsets[dy]
        clash = [o.name for n in later for o in n.outputs if o.name in lay.offsets and o.name != dy
                 and lay.offsets[o.name][0] == region == "arena" and lay.offsets[o.name][1] == off]
        assert not clash, (acc, clash)

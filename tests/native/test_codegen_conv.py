"""The code generator's convolution, pool and view emitters against the numpy reference, bit for bit.

A generated step over every integer node of LeNet, ResNet-8 and MobileNet that has a C mapping
(IntConv, IntConvGradInput and the conv weight-gradient products of the fused updates, with int32
and int64 accumulators, stride 2, 1x1 shortcuts, depthwise and pointwise convolutions; max and
global-average pools and their backward rules; Flatten / Reshape as arena views) runs at batch 1
and 3; every value it hands on and the whole state must equal the numpy run's at 2 (seed, step)
keys. A small model of odd sizes adds asymmetric pads, dilation, a grouped (non-depthwise)
convolution, overlapping max-pool windows with pads, a strided 1x1 convolution and a weight used
twice (so its gradient products stay standalone IntConvGradWeight nodes). Chained steps: the
conv weights evolve only in C and must equal numpy's after 3 steps.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import rctc
from rctc.errors import UnsupportedOpError
from rctc.ir import Graph
from rctc.native.codegen import NativeStep, generate
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext
from tests.native.codegen_cases import assert_same, boundary, feeds, mapped

LR = 0.05
CONV_OPS = {"IntConv", "IntConvGradInput"}
#: the op types of this test's slice: the conv / pool / view emitters and the products,
#: requantise, activations, sums and fused updates between them (other families' emitters,
#: e.g. batch norm or the accumulator updates, have their own tests)
SLICE_OPS = CONV_OPS | {"IntConvGradWeight", "IntMaxPool", "IntMaxPoolGrad", "IntGlobalAveragePool",
                        "IntGlobalAveragePoolGrad", "Flatten", "Reshape", "IntGemm", "Requantize", "IntRelu",
                        "IntReluGrad", "Transpose", "IntReduceSum", "FusedIntUpdate"}


def _slice(g: Graph) -> list:
    return [n for n in mapped(g) if n.op_type in SLICE_OPS]


def odd_model() -> onnx.ModelProto:
    """x (N, 4, 13, 11) through the window shapes the bundled models lack, to 10 logits."""
    rng = np.random.default_rng(1)
    inits, nodes = [], []

    def param(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name))
        return name

    def conv(i: int, x: str, w: tuple[int, ...], **attrs: object) -> str:
        nodes.append(helper.make_node("Conv", [x, param(f"w{i}", *w), param(f"b{i}", w[0])], [f"c{i}"], **attrs))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        return f"r{i}"

    h = conv(1, "x", (8, 4, 3, 3), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1])      # 6 x 5
    h = conv(2, h, (8, 1, 3, 3), kernel_shape=[3, 3], group=8, dilations=[2, 2], pads=[2, 2, 2, 2])
    h = conv(3, h, (8, 4, 3, 3), kernel_shape=[3, 3], group=2, pads=[1, 1, 1, 1])
    shared = param("ws", 8, 8, 1, 1)
    for i in (4, 5):  # one 1x1 weight used twice: its gradient is a sum of two products
        nodes.append(helper.make_node("Conv", [h, shared], [f"c{i}"], kernel_shape=[1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        h = f"r{i}"
    nodes.append(helper.make_node("MaxPool", [h], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    h = conv(6, "p", (16, 8, 1, 1), kernel_shape=[1, 1], strides=[2, 2])                      # 2 x 2
    nodes += [helper.make_node("GlobalAveragePool", [h], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", param("fw", 10, 16), param("fb", 10)], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "odd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 13, 11])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


_GRAPHS: dict[tuple[str, int], Graph] = {}


def _graph(model: str, batch: int) -> Graph:
    if (model, batch) not in _GRAPHS:
        src = odd_model() if model == "odd" else f"models/{model}.onnx"
        _GRAPHS[model, batch] = rctc.compile(src, mode="rct", elementwise="integer", batch_size=batch,
                                             optimizer="sgd").graph
    return _GRAPHS[model, batch]


def _reference(g: Graph, seed: int, step: int) -> dict[str, np.ndarray]:
    """Every value of one numpy training step (no state written back)."""
    names = [o.name for n in g.nodes for o in n.outputs]
    f = feeds(g, np.random.default_rng(seed + 100 * step), LR, scale=1 + step)
    return {**Executor(g).run(f, names, KernelContext(training=True, seed=seed, step=step)), **f}


EXPECTED = {
    "lenet": {"IntMaxPool", "IntMaxPoolGrad", "Flatten", "Reshape"},
    "resnet8": {"IntGlobalAveragePool", "IntGlobalAveragePoolGrad", "Flatten", "Reshape"},
    "mobilenet": {"IntGlobalAveragePool", "IntGlobalAveragePoolGrad", "Flatten", "Reshape"},
    "odd": {"IntMaxPool", "IntMaxPoolGrad", "IntGlobalAveragePool", "IntGlobalAveragePoolGrad", "Flatten",
            "Reshape", "IntConvGradWeight"},
}


@pytest.mark.parametrize("model,batch", [("lenet", 1), ("lenet", 3), ("resnet8", 1), ("resnet8", 3),
                                         ("mobilenet", 1), ("mobilenet", 3), ("odd", 1), ("odd", 3)])
def test_conv_nodes_bit_identical_to_numpy(model: str, batch: int, native_env: dict[str, str]) -> None:
    g = _graph(model, batch)
    nodes = _slice(g)
    ops = {n.op_type for n in nodes}
    assert CONV_OPS | EXPECTED[model] <= ops
    fused = {n.attrs["product"] for n in nodes if n.op_type == "FusedIntUpdate"}
    assert "IntConvGradWeight" in fused
    outs = boundary(g, nodes)
    prog = generate(g, nodes, outs)
    # every conv weight with a fused update is updated by the C step
    conv_weights = {n.inputs[0].name for n in nodes
                    if n.op_type == "FusedIntUpdate" and n.attrs["product"] == "IntConvGradWeight"}
    assert conv_weights and conv_weights <= set(prog.updates)
    stored = {nm: g.values[nm].data for nm in prog.state}
    native = NativeStep(prog, stored, env=native_env)
    for seed, step in ((0, 0), (2**33 + 9, 5)):
        ref = _reference(g, seed, step)
        native.load_state(stored)
        got = native.run({nm: ref[nm] for nm in prog.inputs}, seed=seed, step=step, lr=LR)
        assert_same(got, ref, outs)
        want = {nm: ref[prog.updates[nm]] if nm in prog.updates else stored[nm] for nm in prog.state}
        assert_same(got, want, prog.state)
    # another step draws other stochastic roundings: the comparison can fail
    native.load_state(stored)
    other = native.run({nm: ref[nm] for nm in prog.inputs}, seed=seed, step=step + 1, lr=LR)
    assert not all(np.array_equal(other[nm], ref[prog.updates[nm]]) for nm in conv_weights)


def test_views_share_their_input_bytes() -> None:
    g = _graph("lenet", 3)
    nodes = _slice(g)
    prog = generate(g, nodes, boundary(g, nodes))
    views = [n for n in nodes if n.op_type in ("Flatten", "Reshape")]
    assert {n.op_type for n in views} == {"Flatten", "Reshape"}
    for n in views:
        src, out = prog.slots[n.inputs[0].name], prog.slots[n.outputs[0].name]
        assert (src.region, src.offset, src.nbytes) == (out.region, out.offset, out.nbytes)
        assert out.shape == tuple(n.outputs[0].shape)
    # the shared bytes stay live to the view's last reader: no value placed over them meanwhile
    pos = {n.name: i for i, n in enumerate(nodes)}
    flat = next(n for n in views if n.op_type == "Flatten")
    view = flat.outputs[0].name
    reader = max(i for i, n in enumerate(nodes) if any(v is not None and v.name == view for v in n.inputs))
    assert reader > pos[flat.name] + 1
    lo = prog.slots[flat.inputs[0].name].offset
    hi = lo + prog.slots[flat.inputs[0].name].nbytes
    for n in nodes[pos[flat.name] + 1:reader]:
        for o in n.outputs:
            s = prog.slots[o.name]
            if s.region == "arena":
                assert s.offset + s.nbytes <= lo or s.offset >= hi, o.name


def test_chained_steps_update_conv_weights_in_c(native_env: dict[str, str]) -> None:
    """3 steps: the weights with a fused update evolve only in C; the numpy run supplies what
    the C step does not compute (the quantised input, the loss gradient, the bias updates)."""
    g = _graph("lenet", 2)
    nodes = _slice(g)
    prog = generate(g, nodes, boundary(g, nodes))
    conv_weights = [nm for nm in prog.updates if g.values[nm].shape and len(g.values[nm].shape) == 4]
    assert len(conv_weights) == 2
    ex, seed = Executor(g), 11
    saved = {v.name: v.data.copy() for v in g.values.values() if v.kind in ("param", "buffer")}
    native = NativeStep(prog, {nm: g.values[nm].data for nm in prog.state}, env=native_env)
    try:
        got: dict[str, np.ndarray] = {}
        for step in range(3):
            f = feeds(g, np.random.default_rng(step), LR)
            before = {nm: g.values[nm].data.copy() for nm in prog.state}
            ref = ex.train_step(f, prog.inputs, KernelContext(training=True, seed=seed, step=step))
            native.load_state(before | ({nm: got[nm] for nm in prog.updates} if step else {}))
            got = native.run(ref, seed=seed, step=step, lr=LR)
        for nm in prog.updates:
            assert_same(got, {nm: g.values[nm].data}, [nm])
        for nm in conv_weights:
            assert not np.array_equal(got[nm], saved[nm])
    finally:
        for nm, data in saved.items():
            g.values[nm].data = data


def test_conv_refusals_name_the_problem() -> None:
    g = _graph("lenet", 1)
    conv = next(n for n in g.nodes if n.op_type == "IntConv")
    saved = conv.attrs.get("strides")
    conv.attrs["strides"] = [3, 3]  # no longer gives the output shape the graph holds
    try:
        with pytest.raises(UnsupportedOpError, match="inconsistent shapes") as info:
            generate(g, [conv])
        assert "\n" not in str(info.value) and "numpy backend" in str(info.value)
    finally:
        conv.attrs["strides"] = saved
    upd = next(n for n in g.nodes if n.op_type == "FusedIntUpdate" and n.attrs["product"] == "IntConvGradWeight")
    upd.attrs["transpose"] = [1, 0, 2, 3]
    try:
        with pytest.raises(UnsupportedOpError, match="transposes its conv weight gradient"):
            generate(g, [upd])
    finally:
        upd.attrs["transpose"] = []


def test_step_without_scratch_builds_and_matches(native_env: dict[str, str]) -> None:
    """MobileNet's pointwise data gradients need no scratch (the GEMM writes dX): the step has no
    scratch block (an unused one would fail -Werror) and still equals numpy."""
    g = _graph("mobilenet", 1)
    nodes = [n for n in mapped(g) if n.op_type == "IntConvGradInput" and n.attrs["kernel_shape"] == [1, 1]]
    assert nodes
    prog = generate(g, nodes, boundary(g, nodes) or [o.name for n in nodes for o in n.outputs])
    assert "rctc_scratch_u;" not in prog.source
    native = NativeStep(prog, {nm: g.values[nm].data for nm in prog.state}, env=native_env)
    ref = _reference(g, 4, 2)
    got = native.run({nm: ref[nm] for nm in prog.inputs}, seed=4, step=2, lr=LR)
    assert_same(got, ref, prog.outputs)


def test_transposed_gemm_weight_gradient(native_env: dict[str, str]) -> None:
    """A fused update whose GEMM product is transposed (``transpose`` (1, 0)) writes the product
    with swapped C strides: the same update bits as numpy's ``acc.transpose(perm)``."""
    g = _graph("lenet", 2)
    upd = next(n for n in g.nodes if n.op_type == "FusedIntUpdate" and n.attrs["product"] == "IntGemm")
    upd.attrs["transpose"] = [1, 0]
    try:
        prog = generate(g, [upd], [])
        stored = {nm: g.values[nm].data for nm in prog.state}
        native = NativeStep(prog, stored, env=native_env)
        ref = _reference(g, 6, 1)
        got = native.run({nm: ref[nm] for nm in prog.inputs}, seed=6, step=1, lr=LR)
        (param,) = prog.updates
        assert_same(got, {param: ref[prog.updates[param]]}, [param])
        upd.attrs["transpose"] = []
        plain = _reference(g, 6, 1)[prog.updates[param]]
        assert not np.array_equal(plain, got[param])  # the transpose changes the update
    finally:
        upd.attrs["transpose"] = []


@pytest.mark.parametrize("model,batch", [("resnet8", 1), ("odd", 3)])
def test_banded_columns_bit_identical_to_numpy(model: str, batch: int, native_env: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Column matrices built one band of output rows at a time (``TILE_BYTES`` 1: one row a band,
    stride-2 and padded windows shifting each band's pad) and fused conv updates made one filter
    at a time (``ACC_BYTES`` 1: each filter's gradient rows, then its elements' updates) give
    numpy's bits; the scratch holds one band and one filter's int64 gradient. Requantize
    (``CHUNK`` 7) rounds 7 elements at a time to the same bits. (The other tests run with
    ``FILL_SCRATCH``: bands widened to the block the largest node needs anyway.)"""
    from rctc.native.codegen import generator
    from rctc.native.codegen.emit import conv, requant, update

    g = _graph(model, batch)
    convs = [n for n in _slice(g) if n.op_type in CONV_OPS | {"IntConvGradWeight", "FusedIntUpdate"}]
    monkeypatch.setattr(generator, "FILL_SCRATCH", False)
    whole = generate(g, convs, boundary(g, convs))
    monkeypatch.setattr(generator, "FILL_SCRATCH", True)  # bands widened into the block: it does not grow
    assert generate(g, convs, boundary(g, convs)).scratch_bytes == whole.scratch_bytes
    monkeypatch.setattr(generator, "FILL_SCRATCH", False)
    monkeypatch.setattr(conv, "TILE_BYTES", 1)
    monkeypatch.setattr(update, "ACC_BYTES", 1)
    banded = generate(g, convs, boundary(g, convs))
    assert "r0 += 1)" in banded.source and "rctc_col2im_s32_add(&t" in banded.source
    assert "f0 += 1)" in banded.source
    assert banded.scratch_bytes < whole.scratch_bytes
    monkeypatch.setattr(requant, "CHUNK", 7)  # requantise 7 elements at a time (partial last chunks)
    rounded = {n.attrs.get("rounding", "stochastic") for n in _slice(g) if n.op_type == "Requantize"}
    assert "i0 += 7u)" in generate(g, _slice(g), boundary(g, _slice(g))).source and "stochastic" in rounded
    test_conv_nodes_bit_identical_to_numpy(model, batch, native_env)

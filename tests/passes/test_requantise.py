"""The requantise pass and the integer element-wise lowering (--elementwise integer).

A tiny hand-built CNN (Conv, BatchNorm, Relu, residual Add, MaxPool, Clip, GlobalAveragePool,
Flatten, Gemm, cross-entropy) is compiled with integer element-wise ops and trained one step
with nearest rounding; every integer node's outputs are checked against a plain int64
implementation written here (the exact ops, Requantize, the aligned Add, the pools and the
bias sums) or against float64 within the bound docs/numerics.md states (BatchNorm, the loss).
The forward pass is compared with onnxruntime on the same (dequantised) weights. Every bundled
CNN trains with no float op between its products; a model with an op that has no integer
kernel reports it as a float island (compile, inspect --json) and the energy model counts it
at FP32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import rctc
from rctc import models
from rctc.analysis.counts import Counts
from rctc.analysis.model import CostModel
from rctc.analysis.profiles import load_profile
from rctc.cli import main
from rctc.ops import INT_PRODUCTS, UPDATE_OPS, get

B = 4


def _tiny_cnn(act: str = "Relu") -> onnx.ModelProto:
    rng = np.random.default_rng(1)

    def init(name: str, shape: tuple[int, ...], scale: float = 0.5) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    def const(name: str, value: object) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, np.float32), name)

    inits = [init("w1", (3, 1, 3, 3)), init("b1", (3,), 0.1), init("w2", (3, 3, 3, 3), 0.3),
             const("g", np.ones(3)), const("bb", np.zeros(3)), const("rm", np.zeros(3)), const("rv", np.ones(3)),
             const("lo", 0.0), const("hi", 6.0), init("wf", (4, 3)), init("bf", (4,), 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "bb", "rm", "rv"], ["n1"]),
        helper.make_node(act, ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["r1", "c2"], ["s"]),
        helper.make_node("MaxPool", ["s"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Clip", ["m", "lo", "hi"], ["k"]),
        helper.make_node("GlobalAveragePool", ["k"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1),
    ]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _data(n: int = B) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    return rng.standard_normal((n, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, n)


def _record_step(m: rctc.CompiledModel) -> list[tuple]:
    tr = m.trainer()
    seen: list[tuple] = []
    tr.on_node = lambda node, args, result, env: seen.append(
        (node, [None if a is None else np.array(a, copy=True) for a in args],
         [np.array(r, copy=True) for r in (result if isinstance(result, tuple) else (result,))]))
    x, y = _data()
    tr.train_step(x, y, np.ones(B, np.float32), 0.05)
    return seen


# ----------------------------------------------------------------------------- int64 references
def _qmax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def _ref_requantize(x: np.ndarray, e: int, bits: int) -> tuple[np.ndarray, int]:
    """Nearest (half up) to ``bits`` with the smallest shift that keeps the max in range."""
    x = x.astype(np.int64)
    m = int(np.abs(x).max()) if x.size else 0
    s = 0
    while ((m + ((1 << (s - 1)) if s else 0)) >> s) > _qmax(bits):
        s += 1
    q = (x + (np.int64(1 << (s - 1)) if s else 0)) >> np.int64(s) if s else x
    return q, e + s


def _ref_maxpool(q: np.ndarray, k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    n, c, h, w = q.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, oh, ow), np.int64)
    arg = np.zeros((n, c, oh, ow, 2), np.int64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    win = q[a, b, i * s:i * s + k, j * s:j * s + k].astype(np.int64)
                    r, t = divmod(int(np.argmax(win)), k)  # argmax: the first maximum, row-major
                    out[a, b, i, j] = win[r, t]
                    arg[a, b, i, j] = (i * s + r, j * s + t)
    return out, arg


def _check_node(node, args, outs, bits: int) -> str:  # noqa: C901 - one branch per op type
    op = node.op_type
    if op == "Requantize":
        acc, ae = args[0].astype(np.int64), int(args[1])
        if len(args) > 2 and args[2] is not None:
            bias, be = args[2].astype(np.int64), int(args[3])
            if int(node.attrs.get("bias_axis", -1)) == 1:
                bias = bias.reshape((1, -1) + (1,) * (acc.ndim - 2))
            acc = acc + (bias << (be - ae) if be >= ae else (bias + (1 << (ae - be - 1))) >> (ae - be))
        q, e = _ref_requantize(acc, ae, int(node.attrs["bits"]))
        np.testing.assert_array_equal(outs[0], q)
        assert int(outs[1]) == e
    elif op == "IntRelu":
        np.testing.assert_array_equal(outs[0], np.maximum(args[0], 0))
        assert int(outs[1]) == int(args[1])
    elif op == "IntReluGrad":
        np.testing.assert_array_equal(outs[0], np.where(args[2] > 0, args[0], 0))
    elif op == "IntClip":
        e = int(args[1])
        hi = math.floor(6.0 / 2.0**e)
        np.testing.assert_array_equal(outs[0], np.clip(args[0].astype(np.int64), 0, hi))
    elif op == "IntClipGrad":
        e = int(args[3])
        keep = (args[2] >= 0) & (args[2].astype(np.int64) <= math.floor(6.0 / 2.0**e))
        np.testing.assert_array_equal(outs[0], np.where(keep, args[0], 0))
    elif op == "IntMaxPool":
        ref, _ = _ref_maxpool(args[0], 2, 2)
        np.testing.assert_array_equal(outs[0], ref)
    elif op == "IntMaxPoolGrad":
        _, arg = _ref_maxpool(args[2], 2, 2)
        acc = np.zeros(args[2].shape, np.int64)
        dy = args[0].astype(np.int64)
        for idx in np.ndindex(*dy.shape):
            acc[idx[0], idx[1], arg[idx][0], arg[idx][1]] += dy[idx]
        q, e = _ref_requantize(acc, int(args[1]), bits)
        np.testing.assert_array_equal(outs[0], q)
        assert int(outs[1]) == e
    elif op == "IntAdd":
        (qa, ea), (qb, eb) = (args[0].astype(np.int64), int(args[1])), (args[2].astype(np.int64), int(args[3]))
        ec = min(ea, eb)
        q, e = _ref_requantize((qa << (ea - ec)) + (qb << (eb - ec)), ec, int(node.attrs["bits"]))
        np.testing.assert_array_equal(outs[0], q)
        assert int(outs[1]) == e
    elif op == "IntGlobalAveragePool":
        x = args[0].astype(np.int64)
        n = x.shape[2] * x.shape[3]
        r = ((1 << 32) + n // 2) // n
        q, e = _ref_requantize(x.sum(axis=(2, 3), keepdims=True) * r, int(args[1]) - 32, bits)
        np.testing.assert_array_equal(outs[0], q)
        assert int(outs[1]) == e
    elif op == "IntGlobalAveragePoolGrad":
        shape = tuple(node.attrs["input_shape"])
        n = shape[2] * shape[3]
        r = ((1 << 32) + n // 2) // n
        q, e = _ref_requantize(np.broadcast_to(args[0].astype(np.int64) * r, shape), int(args[1]) - 32, bits)
        np.testing.assert_array_equal(outs[0], q)
    elif op == "IntReduceSum":
        ref = args[0].astype(np.int64).sum(axis=tuple(node.attrs["axes"])).reshape(tuple(node.attrs["shape"]))
        np.testing.assert_array_equal(outs[0], ref)
        assert int(outs[1]) == int(args[1])
    else:
        return ""
    return op


def _deq(q: np.ndarray, e: np.ndarray) -> np.ndarray:
    return q.astype(np.float64) * 2.0 ** int(e)


def test_every_integer_node_of_a_training_step_matches_its_int64_reference() -> None:
    m = rctc.compile(_tiny_cnn(), batch_size=B, elementwise="integer", rounding="nearest", adjust_every=0)
    assert m.graph.meta["float_islands"] == []
    checked = {_check_node(n, a, o, 8) for n, a, o in _record_step(m)}
    assert {"Requantize", "IntRelu", "IntReluGrad", "IntClip", "IntClipGrad", "IntMaxPool", "IntMaxPoolGrad",
            "IntAdd", "IntGlobalAveragePool", "IntGlobalAveragePoolGrad", "IntReduceSum"} <= checked


def test_batchnorm_and_loss_within_their_stated_bounds_of_float64() -> None:
    m = rctc.compile(_tiny_cnn(), batch_size=B, elementwise="integer", rounding="nearest", adjust_every=0)
    seen = {n.op_type: (n, a, o) for n, a, o in _record_step(m)}
    _, a, o = seen["IntBatchNormalization"]
    x, gamma, beta = _deq(a[0], a[1]), _deq(a[2], a[3]), _deq(a[4], a[5])
    mu, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    ref = gamma.reshape(1, -1, 1, 1) * (x - mu) / np.sqrt(var + 1e-5) + beta.reshape(1, -1, 1, 1)
    step = 2.0 ** int(o[1])
    assert np.abs(_deq(o[0], o[1]) - ref).max() <= step / 2 + np.abs(gamma).max() * 2.0**-16 + 1e-9
    rm = _deq(o[2], o[3]).reshape(-1)  # running mean: 0.9 * 0 + 0.1 * batch mean
    np.testing.assert_allclose(rm, 0.1 * mu.reshape(-1), atol=2.0 ** int(o[3]) + 1e-6)
    _, a, o = seen["IntBatchNormGrad"]
    dy, x, g = _deq(a[0], a[1]), _deq(a[2], a[3]), _deq(a[4], a[5]).reshape(1, -1, 1, 1)
    mu, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    xh = (x - mu) / np.sqrt(var + 1e-5)
    dx = g / np.sqrt(var + 1e-5) * (dy - dy.mean(axis=(0, 2, 3), keepdims=True)
                                    - xh * (dy * xh).mean(axis=(0, 2, 3), keepdims=True))
    assert np.abs(_deq(o[0], o[1]) - dx).max() <= 2.0 * 2.0 ** int(o[1])  # one rounding + the Q16 means
    np.testing.assert_allclose(_deq(o[4], o[5]).reshape(-1), dy.sum(axis=(0, 2, 3)), atol=1e-9)
    _, a, o = seen["IntSoftmaxCrossEntropy"]
    z, lab = _deq(a[0], a[1]), a[2]
    logp = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    assert abs(_deq(o[0], o[1]) - (-logp[np.arange(B), lab].mean())) <= 3.3e-3 + 2.0**-14
    _, a, o = seen["IntSoftmaxCrossEntropyGrad"]
    p = np.exp(logp)
    p[np.arange(B), lab] -= 1
    assert np.abs(_deq(o[0], o[1]) - p / B).max() <= 2.0 ** (int(o[1]) - 1) + 4e-3 / B


def test_forward_agrees_with_onnxruntime_on_the_same_weights() -> None:
    onnx_model = _tiny_cnn()
    m = rctc.compile(onnx_model, batch_size=B, elementwise="integer")
    g = m.graph
    weights = {}
    for p in g.params():
        exp = g.value(f"{p.name}.exp").data if f"{p.name}.exp" in g.values else 0
        weights[p.name] = (p.data.astype(np.float64) * 2.0 ** int(exp)).astype(np.float32)
    for t in onnx_model.graph.initializer:
        if t.name in weights:
            t.CopyFrom(numpy_helper.from_array(weights[t.name], t.name))
    x, _ = _data(64)
    ref = ort.InferenceSession(onnx_model.SerializeToString()).run(None, {"x": x})[0]
    out = m.predict(x)["logits"]
    scale = np.abs(ref).max()
    assert np.abs(out - ref).max() <= 0.1 * scale  # 8-bit activations through ten ops
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.85


def test_transformer_integer_nodes_match_int64_references_and_float64_bounds() -> None:
    m = rctc.compile(models.build("tiny_transformer"), batch_size=2, elementwise="integer", rounding="nearest",
                     adjust_every=0)
    _, shape, dt = models.input_spec("tiny_transformer")
    x = np.random.default_rng(3).integers(0, 16, (2, *shape)).astype(dt)
    tr = m.trainer()
    seen: dict[str, tuple] = {}
    tr.on_node = lambda node, args, result, env: seen.setdefault(node.op_type, (
        node, [None if a is None else np.array(a, copy=True) for a in args],
        [np.array(r, copy=True) for r in (result if isinstance(result, tuple) else (result,))]))
    tr.train_step(x, np.array([0, 1]), np.ones(2, np.float32), 0.05)
    n, a, o = seen["IntMul"]
    q, e = _ref_requantize(a[0].astype(np.int64) * a[2].astype(np.int64), int(a[1]) + int(a[3]), 8)
    np.testing.assert_array_equal(o[0], q)
    n, a, o = seen["IntReduceMean"]
    ax = tuple(n.attrs["axes"])
    cnt = math.prod(a[0].shape[i] for i in ax)
    q, e = _ref_requantize(a[0].astype(np.int64).sum(axis=ax) * (((1 << 32) + cnt // 2) // cnt), int(a[1]) - 32, 8)
    np.testing.assert_array_equal(o[0], q)
    n, a, o = seen["IntGatherGrad"]
    ref = np.zeros(tuple(n.attrs["table_shape"]), np.int64)
    for tok, row in zip(a[2].reshape(-1), a[0].reshape(-1, ref.shape[1]).astype(np.int64)):
        ref[tok] += row
    np.testing.assert_array_equal(o[0], ref)
    n, a, o = seen["IntSoftmax"]
    z = _deq(a[0], a[1])
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert np.abs(_deq(o[0], o[1]) - p).max() <= 2.0 ** (int(o[1]) - 1) + 4e-3
    n, a, o = seen["IntLayerNormalization"]
    xf, g, b = _deq(a[0], a[1]), _deq(a[2], a[3]), _deq(a[4], a[5])
    ref = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-5) * g + b
    assert np.abs(_deq(o[0], o[1]) - ref).max() <= 2.0 ** (int(o[1]) - 1) + np.abs(g).max() * 2.0**-15


def _audit(g) -> None:
    """No float op between products: every float value a non-update node produces is a
    Dequantize read only by the model's output (the returned logits, the loss); the integer ops
    read no float (the sample mask is uint8) and no update reads a float gradient."""
    outputs = {v.name for v in g.outputs}
    lr = g.meta["lr_input"]
    for n in g.nodes:
        if n.op_type in UPDATE_OPS:
            floats = [v.name for v in n.inputs if v is not None and v.name != lr
                      and np.issubdtype(np.dtype(v.dtype), np.floating)]
            assert not floats, f"update {n.name} ({n.op_type}) reads float {floats}"
            continue
        if n.op_type in INT_PRODUCTS or get(n.op_type).rct == "integer" and n.op_type != "QuantAct":
            for v in n.inputs:
                if v is not None:
                    assert not np.issubdtype(np.dtype(v.dtype), np.floating), (n.name, v.name)
        if n.meta.get("phase") == "update":
            continue
        for o in n.outputs:
            if np.issubdtype(np.dtype(o.dtype), np.floating) and o.name not in g.state_updates.values():
                assert n.op_type == "Dequantize", f"float op {n.name} ({n.op_type}) in the integer step"
                assert o.name in outputs or all(u.op_type == "Dequantize" and u.outputs[0].name in outputs
                                                for u, _ in o.uses), n.name


@pytest.mark.parametrize("name", ["lenet", "mlp", "resnet8", "mobilenet", "tiny_transformer"])
def test_bundled_models_train_with_no_float_op_between_products(name: str) -> None:
    b = 2 if name == "resnet8" else B
    m = rctc.compile(models.build(name), batch_size=b, elementwise="integer", adjust_every=0)
    assert m.graph.meta["float_islands"] == []
    _audit(m.graph)
    _, shape, dt = models.input_spec(name)
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 16, (2 * b, *shape)) if np.issubdtype(dt, np.integer)
         else rng.standard_normal((2 * b, *shape))).astype(dt)
    y = rng.integers(0, models.num_classes(name), 2 * b)
    s = m.train(x, y, steps=2, shuffle=False)
    assert math.isfinite(s["final_loss"])
    assert all(v.dtype.kind == "i" for v in m.graph.values.values() if v.kind == "buffer" and "running" in v.name)


def test_resnet20_compiles_integer_from_end_to_end() -> None:
    g = rctc.compile(models.path("resnet20"), batch_size=2, elementwise="integer").graph
    assert g.meta["float_islands"] == []
    _audit(g)


def _sigmoid_mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((3, 8)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1), helper.make_node("Softplus", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "w2"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "sig", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_an_op_without_integer_kernel_is_a_reported_float_island(tmp_path: Path) -> None:
    src = tmp_path / "sig.onnx"
    onnx.save(_sigmoid_mlp(), src)
    m = rctc.compile(str(src), batch_size=B, elementwise="integer")
    islands = m.graph.meta["float_islands"]
    assert [i["op_type"] for i in islands] == ["Softplus", "SoftplusGrad"]  # (Sigmoid is integer now)
    sig = next(n for n in m.graph.nodes if n.op_type == "Softplus")
    assert sig.inputs[0].producer.op_type == "Dequantize"  # dequantise -> float32 -> quantise
    assert {u.op_type for u, _ in sig.outputs[0].uses} == {"QuantAct"}
    counts = Counts()
    CostModel(m.graph, load_profile()).static_cost(sig, counts)
    assert set(counts.elementwise["special"]) == {"fp32"}  # counted as FP32 work
    rng = np.random.default_rng(0)
    s = m.train(rng.standard_normal((8, 5)).astype(np.float32), rng.integers(0, 3, 8), steps=2)
    assert math.isfinite(s["final_loss"])

    runner = CliRunner()
    out = tmp_path / "sig.rct"
    res = runner.invoke(main, ["compile", str(src), "-o", str(out), "--elementwise", "integer", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    assert "float islands (integer element-wise): a_" not in res.output and "(Softplus)" in res.output
    res = runner.invoke(main, ["inspect", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert [i["op_type"] for i in json.loads(res.output)["float_islands"]] == ["Softplus", "SoftplusGrad"]
    lenet = tmp_path / "lenet.rct"
    assert runner.invoke(main, ["compile", str(models.path("lenet")), "-o", str(lenet), "--elementwise",
                                "integer"]).exit_code == 0
    info = json.loads(runner.invoke(main, ["inspect", "--json", str(lenet)]).output)
    assert info["float_islands"] == [] and info["elementwise"] == "integer"


def test_elementwise_float_keeps_version_1_lowering() -> None:
    g = rctc.compile(models.path("lenet"), batch_size=B, elementwise="float").graph
    assert not any(n.op_type in ("Requantize", "IntRelu") for n in g.nodes)
    assert {i["op_type"] for i in g.meta["float_islands"]} >= {"Relu", "MaxPool", "SoftmaxCrossEntropy"}
    with pytest.raises(rctc.RctcError, match="--elementwise"):
        rctc.compile(models.path("lenet"), elementwise="fixed")


@pytest.mark.parametrize("name", ["mlp", "lenet", "tiny_transformer"])
def test_weight_gradients_stay_fused_into_their_updates(name: str) -> None:
    """A weight gradient (through a Transpose) is consumed by the fused update as the exact product,
    never requantised first."""
    def fused(el: str) -> int:
        g = rctc.compile(models.build(name), batch_size=2, optimizer="momentum", elementwise=el).graph
        return sum(n.op_type.startswith("Fused") for n in g.nodes)

    assert fused("integer") == fused("float") > 0


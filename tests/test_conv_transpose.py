"""ConvTranspose: forward vs onnxruntime over groups / stride / pads / output_padding / dilation /
auto_pad / output_shape, the input / weight / bias gradients vs finite differences and PyTorch,
and a small decoder that trains in rct / qat / fp32."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import rctc
from rctc.ir import Graph
from rctc.passes.build_backward import backward
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext
from tests.passes.gradcheck import check_op_grad


def _out(rank: int) -> list[onnx.ValueInfoProto]:
    return [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(rank)])]


RNG = np.random.default_rng(7)

#: (input shape, weight shape, attributes): 1-D, 2-D and 3-D, every attribute the op has
CASES: list[tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
    ((2, 3, 5, 4), (3, 2, 3, 3), {}),
    ((2, 4, 5, 4), (4, 3, 3, 2), {"strides": [2, 2], "pads": [1, 0, 1, 1], "group": 2}),
    ((2, 3, 4, 4), (3, 2, 2, 2), {"strides": [2, 2]}),
    ((1, 2, 4, 3), (2, 3, 3, 3), {"strides": [2, 3], "output_padding": [1, 2], "pads": [1, 1, 0, 0]}),
    ((2, 2, 5, 5), (2, 2, 3, 3), {"dilations": [2, 1], "pads": [2, 1, 1, 0]}),
    ((2, 3, 4, 5), (3, 1, 3, 3), {"strides": [2, 2], "group": 3, "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 3, 4), (2, 3, 4, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 3, 4), (2, 3, 3, 2), {"strides": [1, 2], "auto_pad": "VALID"}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [3, 2], "output_shape": [8, 6]}),
    ((2, 3, 7), (3, 2, 4), {"strides": [3], "pads": [1, 2], "output_padding": [2]}),
    ((1, 2, 3, 2, 3), (2, 2, 2, 3, 2), {"strides": [2, 1, 2], "pads": [0, 1, 0, 1, 0, 1]}),
    # output_shape one past the full output (9, 7): the spec's negative total padding (onnx's
    # test_convtranspose_output_shape)
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),
]


def _model(x_shape: tuple[int, ...], w: np.ndarray, b: np.ndarray | None, attrs: dict) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(w, "up.weight")]
    names = ["x", "up.weight"]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "up.bias"))
        names.append("up.bias")
    node = helper.make_node("ConvTranspose", names, ["y"], **attrs)
    graph = helper.make_graph([node], "convt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              _out(len(x_shape)), inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("case", range(len(CASES)))
def test_forward_matches_onnxruntime(case: int) -> None:
    x_shape, w_shape, attrs = CASES[case]
    w = RNG.standard_normal(w_shape).astype(np.float32)
    b = RNG.standard_normal(w_shape[1] * int(attrs.get("group", 1))).astype(np.float32) if case % 2 else None
    model = _model(x_shape, w, b, attrs)
    x = RNG.standard_normal(x_shape).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = rctc.compile(model, mode="fp32", batch_size=x_shape[0], loss="mse").predict(x)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [1, 3, 5, 6, 9, 10, 11, 12])
def test_gradients_match_finite_differences(case: int) -> None:
    x_shape, w_shape, attrs = CASES[case]
    x = RNG.standard_normal(x_shape)
    w = RNG.standard_normal(w_shape)
    bias = RNG.standard_normal(w_shape[1] * int(attrs.get("group", 1)))
    check_op_grad("ConvTranspose", {"x": x, "w": w, "b": bias}, attrs)


@pytest.mark.parametrize("case", [1, 3, 4, 5, 10])
def test_gradients_match_pytorch(case: int) -> None:
    torch = pytest.importorskip("torch")
    x_shape, w_shape, attrs = CASES[case]
    k = len(x_shape) - 2
    x, w = RNG.standard_normal(x_shape), RNG.standard_normal(w_shape)
    group = int(attrs.get("group", 1))
    bias = RNG.standard_normal(w_shape[1] * group)
    pads = attrs.get("pads", [0] * 2 * k)
    fn = {1: torch.nn.functional.conv_transpose1d, 2: torch.nn.functional.conv_transpose2d}[k]
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, bias))
    yt = fn(xt, wt, bt, stride=attrs.get("strides", 1), output_padding=attrs.get("output_padding", 0), groups=group,
            dilation=attrs.get("dilations", 1))
    crop = (slice(None), slice(None)) + tuple(slice(pads[i], yt.shape[2 + i] - pads[k + i]) for i in range(k))
    yt = yt[crop]  # ONNX's asymmetric pads: crop the full output, as ConvTranspose's pads do
    r = RNG.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(r))
    g = Graph()
    vals = []
    for name, a in (("x", x), ("w", w), ("b", bias)):
        v = g.add_value(name, a.shape, np.float64, "param", a)
        v.trainable = True
        vals.append(v)
    g.add_node("ConvTranspose", vals, [("y", tuple(yt.shape), np.float64)], dict(attrs))
    grads = backward(g, {"y": g.add_const("R", r)}, vals)
    out = Executor(g).run({}, [grads[n].name for n in ("x", "w", "b")] + ["y"], KernelContext(training=True))
    np.testing.assert_allclose(out["y"], yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    for name, t in (("x", xt), ("w", wt), ("b", bt)):
        np.testing.assert_allclose(out[grads[name].name], t.grad.numpy(), rtol=1e-10, atol=1e-10)


def decoder() -> onnx.ModelProto:
    """x (N, 2, 4, 4) -> Conv(4, 3x3, stride 2) -> Relu -> ConvTranspose(3, 3x3, stride 2, output_padding 1)
    -> Relu -> GlobalAveragePool -> Flatten -> Gemm(3)."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array((rng.standard_normal((4, 2, 3, 3)) / 3).astype(np.float32), "enc.weight"),
             numpy_helper.from_array(np.zeros(4, np.float32), "enc.bias"),
             numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) / 3).astype(np.float32), "up.weight"),
             numpy_helper.from_array(np.full(3, 0.1, np.float32), "up.bias"),
             numpy_helper.from_array((rng.standard_normal((3, 3)) / 2).astype(np.float32), "fc.weight"),
             numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias")]
    nodes = [helper.make_node("Conv", ["x", "enc.weight", "enc.bias"], ["h"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("ConvTranspose", ["r", "up.weight", "up.bias"], ["u"], strides=[2, 2], pads=[1, 1, 1, 1],
                              output_padding=[1, 1]),
             helper.make_node("Relu", ["u"], ["a"]),
             helper.make_node("GlobalAveragePool", ["a"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "decoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("mode", ["rct", "qat", "fp32"])
def test_trains_in_every_mode(mode: str) -> None:
    x = RNG.standard_normal((8, 2, 4, 4)).astype(np.float32)
    y = RNG.integers(0, 3, 8)
    m = rctc.compile(decoder(), mode=mode, batch_size=8, lr=0.2, seed=3)
    g = m.graph
    assert {"ConvTransposeGradWeight", "ConvTransposeGradInput"} <= {n.op_type for n in g.nodes}
    w = g.value("up.weight")
    before = np.array(w.data, copy=True)
    first = m.evaluate(x, y)["loss"]
    m.train(x, y, steps=10, shuffle=False)
    assert m.evaluate(x, y)["loss"] < first
    assert not np.array_equal(w.data, before), "the ConvTranspose weight did not train"
    if mode == "rct":
        assert np.issubdtype(w.data.dtype, np.integer)

"""PRelu (trainable slope broadcast per channel): forward vs onnxruntime, gradients of the
input and the slope vs finite differences and PyTorch, training in rct / qat / fp32, and a
PyTorch export trained one SGD step against PyTorch's own step."""

from __future__ import annotations

import io

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

RNG = np.random.default_rng(42)


def _away_from_zero(x: np.ndarray, gap: float = 0.05) -> np.ndarray:
    return np.where(np.abs(x) < gap, np.sign(x + 1e-12) * gap, x)


def _cnn(c: int = 3, slope_shape: tuple[int, ...] | None = None) -> onnx.ModelProto:
    """x (N, 2, 6, 6) -> Conv(c, 3x3) -> PRelu(slope) -> GlobalAveragePool -> Flatten -> Gemm(4)."""
    rng = np.random.default_rng(0)
    shape = slope_shape or (c, 1, 1)
    inits = [numpy_helper.from_array((rng.standard_normal((c, 2, 3, 3)) / 3).astype(np.float32), "conv.weight"),
             numpy_helper.from_array(np.zeros(c, np.float32), "conv.bias"),
             numpy_helper.from_array(np.linspace(0.1, 0.4, int(np.prod(shape))).reshape(shape).astype(np.float32),
                                     "act.weight"),
             numpy_helper.from_array((rng.standard_normal((4, c)) / 2).astype(np.float32), "fc.weight"),
             numpy_helper.from_array(np.zeros(4, np.float32), "fc.bias")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["h", "act.weight"], ["a"]),
             helper.make_node("GlobalAveragePool", ["a"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "prelu_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,), (3, 6, 6)])
def test_forward_matches_onnxruntime(slope_shape: tuple[int, ...]) -> None:
    model = _cnn(3, slope_shape)
    x = RNG.standard_normal((4, 2, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = rctc.compile(model, mode="fp32", batch_size=4).predict(x)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,), (2, 3, 4, 5)])
def test_gradients_match_finite_differences(slope_shape: tuple[int, ...]) -> None:
    x = _away_from_zero(RNG.standard_normal((2, 3, 4, 5)))
    slope = RNG.uniform(-0.5, 0.8, slope_shape)
    check_op_grad("PRelu", {"x": x, "slope": slope})
    check_op_grad("PRelu", {"x": x, "slope": slope}, wrt=["slope"])
    check_op_grad("PRelu", {"x": x, "slope": slope}, wrt=["x"])


def test_gradients_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 3, 4, 5))
    x[0, 0, 0, :2] = 0.0  # PyTorch's convention at 0: dx = slope * dy, dslope = 0
    w = np.array([0.25, -0.1, 0.6])
    r = RNG.standard_normal(x.shape)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.prelu(xt, wt).backward(torch.tensor(r))
    g = Graph()
    xv = g.add_value("x", x.shape, np.float64, "param", x)
    sv = g.add_value("slope", (3, 1, 1), np.float64, "param", w.reshape(3, 1, 1))
    xv.trainable = sv.trainable = True
    g.add_node("PRelu", [xv, sv], [("y", x.shape, np.float64)])
    grads = backward(g, {"y": g.add_const("R", r)}, [xv, sv])
    out = Executor(g).run({}, [grads["x"].name, grads["slope"].name], KernelContext(training=True))
    np.testing.assert_allclose(out[grads["x"].name], xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out[grads["slope"].name].reshape(3), wt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("slope_shape", [(1,), (3, 1, 1)])
def test_slope_is_a_trainable_parameter_whatever_its_size(slope_shape: tuple[int, ...]) -> None:
    g = rctc.compile(_cnn(3, slope_shape), mode="fp32", batch_size=2).graph
    slope = g.value("act.weight")
    assert slope.kind == "param" and slope.trainable and "act.weight" in g.meta["param_grads"]


@pytest.mark.parametrize("mode", ["rct", "qat", "fp32"])
def test_trains_in_every_mode(mode: str) -> None:
    model = _cnn()
    x = RNG.standard_normal((8, 2, 6, 6)).astype(np.float32)
    y = RNG.integers(0, 4, 8)
    m = rctc.compile(model, mode=mode, batch_size=8, lr=0.5, seed=3)
    g = m.graph
    assert any(n.op_type == "PRelu" for n in g.nodes)
    assert any(n.op_type in ("PReluSlopeGrad",) for n in g.nodes)
    slope = g.value("act.weight")
    before = np.array(slope.data, copy=True)
    first = m.evaluate(x, y)["loss"]
    m.train(x, y, steps=12, shuffle=False)
    assert m.evaluate(x, y)["loss"] < first
    assert not np.array_equal(slope.data, before), "the slope did not train"
    if mode == "rct":  # only the integer copy exists, updated by the integer update
        assert np.issubdtype(slope.data.dtype, np.integer)
        assert any(n.op_type in ("IntSGDUpdate", "IntAccSGDUpdate", "FusedIntUpdate") and n.inputs[0] is slope
                   for n in g.nodes)
    else:
        assert slope.data.dtype == np.float32


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter: fast, and exports PRelu
def test_pytorch_export_trains_like_pytorch() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.PReLU(3), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(3, 4))
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.randn(4, 2, 6, 6),), buf, dynamo=False, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    model = onnx.load_from_string(buf.getvalue())
    x = RNG.standard_normal((4, 2, 6, 6)).astype(np.float32)
    y = RNG.integers(0, 4, 4)
    m = rctc.compile(model, mode="fp32", batch_size=4, lr=0.1, optimizer="sgd")
    np.testing.assert_allclose(m.predict(x)["logits"], net(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    slope_name = next(n.input[1] for n in model.graph.node if n.op_type == "PRelu")
    before = net[1].weight.detach().numpy().copy()
    m.train(x, y, steps=1, shuffle=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(net(torch.tensor(x)), torch.tensor(y)).backward()
    opt.step()
    want = net[1].weight.detach().numpy() - before
    assert np.abs(want).min() > 1e-5  # the step moved every slope
    np.testing.assert_allclose(m.graph.value(slope_name).data.reshape(3) - before, want, rtol=2e-3, atol=1e-8)

"""InstanceNormalization: forward vs onnxruntime, the input / scale / bias gradients vs finite
differences and PyTorch, and PyTorch's GroupNorm export (Reshape + InstanceNormalization +
Reshape + Mul + Add) vs PyTorch forward and one SGD step."""

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


def _out(rank: int) -> list[onnx.ValueInfoProto]:
    return [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(rank)])]


RNG = np.random.default_rng(5)


@pytest.mark.parametrize("x_shape,eps", [((2, 3, 4, 5), 1e-5), ((3, 2, 7), 1e-3), ((1, 4, 2, 3, 2), 0.1)])
def test_forward_matches_onnxruntime(x_shape: tuple[int, ...], eps: float) -> None:
    c = x_shape[1]
    inits = [numpy_helper.from_array(RNG.uniform(0.5, 1.5, c).astype(np.float32), "norm.weight"),
             numpy_helper.from_array(RNG.standard_normal(c).astype(np.float32), "norm.bias")]
    node = helper.make_node("InstanceNormalization", ["x", "norm.weight", "norm.bias"], ["y"], epsilon=eps)
    graph = helper.make_graph([node], "inorm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              _out(len(x_shape)), inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert {"norm.weight", "norm.bias"} <= set(rctc.compile(model, mode="fp32", batch_size=x_shape[0],
                                                             loss="mse").graph.meta["param_grads"])
    x = (RNG.standard_normal(x_shape) * 3 + 1).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = rctc.compile(model, mode="fp32", batch_size=x_shape[0], loss="mse").predict(x)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("x_shape", [(2, 3, 4, 5), (3, 2, 6)])
def test_gradients_match_finite_differences(x_shape: tuple[int, ...]) -> None:
    c = x_shape[1]
    ins = {"x": RNG.standard_normal(x_shape), "scale": RNG.uniform(0.5, 1.5, c), "b": RNG.standard_normal(c)}
    check_op_grad("InstanceNormalization", ins, {"epsilon": 1e-3})
    check_op_grad("InstanceNormalization", ins, {"epsilon": 1e-3}, wrt=["x"])


def test_gradients_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    x, s, bias = RNG.standard_normal((2, 3, 4, 5)), RNG.uniform(0.5, 1.5, 3), RNG.standard_normal(3)
    xt, st, bt = (torch.tensor(a, requires_grad=True) for a in (x, s, bias))
    yt = torch.nn.functional.instance_norm(xt, weight=st, bias=bt, eps=1e-5)
    r = RNG.standard_normal(x.shape)
    yt.backward(torch.tensor(r))
    g = Graph()
    vals = []
    for name, a in (("x", x), ("s", s), ("b", bias)):
        v = g.add_value(name, a.shape, np.float64, "param", a)
        v.trainable = True
        vals.append(v)
    g.add_node("InstanceNormalization", vals, [("y", x.shape, np.float64)], {"epsilon": 1e-5})
    grads = backward(g, {"y": g.add_const("R", r)}, vals)
    out = Executor(g).run({}, ["y"] + [grads[n].name for n in ("x", "s", "b")], KernelContext(training=True))
    np.testing.assert_allclose(out["y"], yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name, t in (("x", xt), ("s", st), ("b", bt)):
        np.testing.assert_allclose(out[grads[name].name], t.grad.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter: fast
def test_pytorch_groupnorm_export_matches_and_trains_like_pytorch() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.GroupNorm(2, 4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.randn(4, 2, 6, 6),), buf, dynamo=False, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    model = onnx.load_from_string(buf.getvalue())
    assert "InstanceNormalization" in {n.op_type for n in model.graph.node}
    x = RNG.standard_normal((4, 2, 6, 6)).astype(np.float32)
    y = RNG.integers(0, 3, 4)
    m = rctc.compile(model, mode="fp32", batch_size=4, lr=0.1, optimizer="sgd")
    np.testing.assert_allclose(m.predict(x)["logits"], net(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    m.train(x, y, steps=1, shuffle=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(net(torch.tensor(x)), torch.tensor(y)).backward()
    opt.step()
    g = m.graph
    # the exporter names GroupNorm's affine parameters after their Mul / Add (unsqueezed to (C, 1, 1))
    by_op = {n.op_type: n.input[1] for n in model.graph.node if n.op_type in ("Mul", "Add")}
    onnx_name = {"1.weight": by_op["Mul"], "1.bias": by_op["Add"]}
    assert sorted(g.meta["param_grads"]) == sorted(onnx_name.get(k, k) for k, _ in net.named_parameters()), \
        "InstanceNormalization's constant scale / bias must not train"
    for pname, p in net.named_parameters():
        np.testing.assert_allclose(g.value(onnx_name.get(pname, pname)).data.reshape(p.shape), p.detach().numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=pname)


# GroupNormalization nodes themselves: tests/test_group_norm.py (rewritten at import into the form above)

"""Where, Max, Min, ReduceMax, ReduceMin, ArgMin, Split, Tile and the gradients of Slice (any steps)
and Expand: forward against onnxruntime, gradients against finite differences, a PyTorch model using
them trained two SGD steps against PyTorch's own, and training in rct / qat / fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import rctc
from tests.passes.gradcheck import check_op_grad

RNG = np.random.default_rng(7)
N, F = 4, 6


def _model(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], width: int) -> onnx.ModelProto:
    """x [N, F] -> nodes (reading ``x``, writing ``h`` [N, width]) -> Gemm -> logits [N, 3]."""
    rng = np.random.default_rng(0)
    inits = {**inits, "fc.weight": rng.uniform(-0.5, 0.5, (3, width)).astype(np.float32),
             "fc.bias": np.zeros(3, np.float32)}
    nodes = [*nodes, helper.make_node("Gemm", ["h", "fc.weight", "fc.bias"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "sel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", F])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _i64(*v: int) -> np.ndarray:
    return np.array(v, np.int64)


CASES = {
    "where": ([helper.make_node("Greater", ["x", "zero"], ["c"]), helper.make_node("Mul", ["x", "k"], ["xk"]),
               helper.make_node("Where", ["c", "x", "xk"], ["h"])],
              {"zero": np.zeros((), np.float32), "k": np.full(F, 0.3, np.float32)}, F),
    "max_min": ([helper.make_node("Max", ["x", "a", "b"], ["m"]), helper.make_node("Min", ["x", "a"], ["n"]),
                 helper.make_node("Add", ["m", "n"], ["h"])],
                {"a": np.linspace(-1, 1, F, dtype=np.float32), "b": np.zeros((1, F), np.float32)}, F),
    "reduce_max_min": ([helper.make_node("Reshape", ["x", "shape"], ["x3"]),
                        helper.make_node("ReduceMax", ["x3", "ax"], ["mx"], keepdims=0),
                        helper.make_node("ReduceMin", ["x3", "ax"], ["mn"], keepdims=0),
                        helper.make_node("Concat", ["mx", "mn"], ["h"], axis=1)],
                       {"shape": _i64(N, 2, 3), "ax": _i64(2)}, 4),
    "split_tile": ([helper.make_node("Split", ["x", "parts"], ["s0", "s1"], axis=1),
                    helper.make_node("Tile", ["s0", "reps"], ["t"]), helper.make_node("Mul", ["t", "t"], ["tt"]),
                    helper.make_node("Concat", ["tt", "s1"], ["h"], axis=1)],
                   {"parts": _i64(2, 4), "reps": _i64(1, 3)}, 10),
    "slice_steps_expand": ([helper.make_node("Slice", ["x", "st", "en", "axs", "stp"], ["sl"]),
                            helper.make_node("Expand", ["bias", "eshape"], ["eb"]),
                            helper.make_node("Add", ["sl", "eb"], ["h"])],
                           {"st": _i64(-1), "en": _i64(-100), "axs": _i64(1), "stp": _i64(-2),
                            "bias": np.array([[0.5]], np.float32), "eshape": _i64(N, 3)}, 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_onnxruntime_and_trains(tmp_path: Path, case: str) -> None:
    nodes, inits, width = CASES[case]
    model = _model(nodes, inits, width)
    x = RNG.standard_normal((N, F)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    m = rctc.compile(model, mode="fp32", batch_size=N)
    np.testing.assert_allclose(m.predict(x)["logits"], want, rtol=1e-5, atol=1e-6)
    y = RNG.integers(0, 3, N)
    for mode in ("fp32", "qat", "rct"):
        mm = rctc.compile(model, mode=mode, batch_size=N)
        first = mm.evaluate(x, y)["loss"]
        mm.train(x, y, steps=8, lr=0.2, shuffle=False)
        assert mm.evaluate(x, y)["loss"] < first, mode
        out = tmp_path / f"{mode}.onnx"
        mm.export(out, "float")
        got = ort.InferenceSession(str(out)).run(None, {"x": x})[0]
        ref = mm.predict(x)["logits"]
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()), err_msg=mode)


def _distinct(shape: tuple[int, ...]) -> np.ndarray:
    """Values far apart (no ties), so the extremum ops are differentiable at the point."""
    return (RNG.permutation(int(np.prod(shape))).reshape(shape) * 0.37 - 1.1).astype(np.float64)


def test_gradients_match_finite_differences() -> None:
    x, y = _distinct((3, 4)), _distinct((3, 4)) + 0.05
    check_op_grad("Where", {"condition": RNG.random((3, 1)) > 0.5, "X": x, "Y": RNG.standard_normal((4,))},
                  wrt=["X", "Y"])
    check_op_grad("Max", {"a": x, "b": y, "c": _distinct((4,)) + 0.11}, wrt=["a", "b", "c"])
    check_op_grad("Min", {"a": x, "b": y}, wrt=["a", "b"])
    for op in ("ReduceMax", "ReduceMin"):
        for keep in (0, 1):
            check_op_grad(op, {"data": _distinct((2, 3, 4)), "axes": _i64(0, 2)}, {"keepdims": keep}, wrt=["data"])
    check_op_grad("Split", {"input": RNG.standard_normal((2, 7)), "split": _i64(3, 4)}, {"axis": 1},
                  wrt=["input"], n_out=2, grad_outputs=(0, 1))
    check_op_grad("Split", {"input": RNG.standard_normal((5, 2)), "split": None}, {"axis": 0, "num_outputs": 2},
                  wrt=["input"], n_out=2, grad_outputs=(1,))  # parts 3 and 2; only the second read
    check_op_grad("Tile", {"input": RNG.standard_normal((2, 3)), "repeats": _i64(3, 2)}, wrt=["input"])
    check_op_grad("Slice", {"data": RNG.standard_normal((5, 6)), "starts": _i64(4, 1), "ends": _i64(-10, 6),
                            "axes": _i64(0, 1), "steps": _i64(-2, 2)}, wrt=["data"])
    check_op_grad("Expand", {"input": RNG.standard_normal((3, 1)), "shape": _i64(2, 3, 4)}, wrt=["input"])


def test_ties_share_the_gradient_as_pytorch() -> None:
    torch = pytest.importorskip("torch")
    from rctc.runtime.kernels.selection import extremum_grad, reduce_extremum_grad

    a = np.array([[1.0, 2.0, 2.0]])
    b = np.array([[1.0, 0.0, 2.0]])
    dy = np.array([[1.0, 1.0, 1.0]])

    class _N:
        attrs = {"index": 0}
    got = extremum_grad(None, _N(), dy, np.maximum(a, b), a, b)  # type: ignore[arg-type]
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    torch.maximum(ta, tb).sum().backward()
    np.testing.assert_allclose(got, ta.grad.numpy())
    x = np.array([[3.0, 3.0, 1.0], [0.0, 2.0, 2.0]])

    class _R:
        attrs = {"axes": [1], "keepdims": 0}
    got = reduce_extremum_grad(None, _R(), np.ones(2), x, x.max(axis=1))  # type: ignore[arg-type]
    tx = torch.tensor(x, requires_grad=True)
    torch.amax(tx, dim=1).sum().backward()
    np.testing.assert_allclose(got, tx.grad.numpy())


def test_a_pytorch_model_using_them_steps_as_pytorch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(F, 8)
            self.fc = torch.nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            left, right = torch.split(h, [3, 5], dim=1)
            peak = torch.amax(right, dim=1, keepdim=True)
            gated = torch.where(left > 0, left, 0.1 * left)
            both = torch.maximum(gated, torch.flip(gated, dims=[1]))
            return self.fc(torch.cat([both.repeat(1, 2), peak, right[:, ::2][:, :3].sum(1, keepdim=True)], dim=1))

    net = Net()
    x, y = torch.randn(N, F), torch.tensor([0, 1, 2, 1])
    path = tmp_path / "sel.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}},
                      opset_version=18)
    m = rctc.compile(path, mode="fp32", batch_size=N)
    np.testing.assert_allclose(m.predict(x.numpy())[m.graph.meta["model_outputs"][0]],
                               net(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    m.train(x.numpy(), y.numpy(), steps=2, lr=0.1, shuffle=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    for p in m.graph.params():
        np.testing.assert_allclose(p.data, sd[p.name], atol=1e-6, err_msg=p.name)


def test_a_float_cast_passes_the_gradient_back() -> None:
    check_op_grad("Cast", {"input": RNG.standard_normal((3, 4))}, {"to": 11}, wrt=["input"])  # float64 -> float64
    # float64 -> float32 -> back: the gradient arrives in the input's dtype
    from rctc.ir import Graph
    from rctc.passes.build_backward import backward
    g = Graph()
    x = g.add_value("x", (2,), np.float64, "param", np.ones(2))
    x.trainable = True
    y = g.add_node("Cast", [x], [("y", (2,), np.float32)], {"to": 1}).outputs[0]
    grads = backward(g, {y.name: g.add_const("seed", np.ones(2, np.float32))}, [x])
    assert np.dtype(grads["x"].dtype) == np.float64

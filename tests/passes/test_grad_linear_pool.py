"""Gradient rules and backward kernels of Conv, Gemm, MatMul and the pooling ops.

Each rule is checked against central finite differences in float64 (``check_op_grad``) on a
grid of awkward shapes, and once per op against ``torch.autograd`` in float64. Structural tests
pin the node conventions (op types, resolved attrs, role tags) that later passes match on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rctc.ir import Graph
from rctc.passes.build_backward import backward
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext
from tests.passes.gradcheck import check_op_grad


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


def _backward(op: str, inputs: dict[str, np.ndarray | None], attrs: dict[str, Any], y_shape: tuple[int, ...],
              wrt: list[str], seed: int = 1) -> tuple[Graph, dict[str, np.ndarray], np.ndarray]:
    """One-node graph, backward seeded with a random R; returns (graph, grads, R)."""
    g = Graph()
    ins = []
    dtype = next(v.dtype for v in inputs.values() if v is not None)
    for k, v in inputs.items():
        if v is None:
            ins.append(None)
            continue
        val = g.add_value(k, v.shape, v.dtype, "param" if k in wrt else "const", v)
        val.trainable = k in wrt
        ins.append(val)
    g.add_node(op, ins, [("y", y_shape, dtype)], attrs)
    r = np.random.default_rng(seed).standard_normal(y_shape).astype(dtype)
    grads = backward(g, {"y": g.add_const("R", r)}, [g.value(k) for k in wrt])
    g.outputs = list(grads.values())
    g.verify()
    out = Executor(g).run({}, [v.name for v in grads.values()], KernelContext(training=True))
    return g, {k: out[v.name] for k, v in grads.items()}, r


# ----------------------------------------------------------------------------- Conv
CONV_CASES = [
    # (x shape, w shape, attrs, bias)
    ((2, 3, 7, 7), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, True),
    ((1, 2, 8, 7), (3, 2, 3, 3), {"strides": [2, 2]}, False),  # last row/col reached by no window
    ((2, 2, 7, 6), (3, 2, 3, 2), {"dilations": [2, 2], "pads": [2, 1, 2, 1]}, True),
    ((2, 4, 5, 5), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, True),
    ((2, 3, 6, 6), (3, 1, 3, 3), {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}, False),  # depthwise
    ((1, 3, 5, 5), (6, 1, 3, 3), {"group": 3, "pads": [1, 0, 1, 0]}, True),  # depthwise, multiplier 2
    ((1, 2, 5, 6), (2, 2, 3, 3), {"pads": [0, 1, 2, 1]}, True),  # asymmetric pads
    ((2, 2, 5, 5), (3, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, True),
    ((1, 2, 6, 5), (2, 2, 2, 2), {"strides": [1, 2], "auto_pad": "SAME_LOWER"}, False),
    ((2, 3, 5, 7), (2, 3, 2, 3), {"strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 0, 2]}, True),
    ((2, 3, 9), (4, 3, 3), {"strides": [2], "pads": [1, 0]}, True),  # 1-D
    ((1, 2, 3, 4, 4), (2, 2, 2, 2, 2), {"strides": [1, 2, 2]}, True),  # 3-D
]


@pytest.mark.parametrize("x_shape,w_shape,attrs,bias", CONV_CASES)
def test_conv_grad_fd(x_shape: tuple, w_shape: tuple, attrs: dict, bias: bool) -> None:
    rng = np.random.default_rng(0)
    inputs = {"x": _rand(rng, *x_shape), "w": _rand(rng, *w_shape)}
    if bias:
        inputs["b"] = _rand(rng, w_shape[0])
    check_op_grad("Conv", inputs, {"kernel_shape": list(w_shape[2:]), **attrs})


def test_conv_grad_weight_only_emits_no_data_grad() -> None:
    rng = np.random.default_rng(1)
    x, w = _rand(rng, 2, 2, 5, 5), _rand(rng, 3, 2, 3, 3)
    g, grads, _ = _backward("Conv", {"x": x, "w": w}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
                            (2, 3, 3, 3), ["w"])
    ops = [n.op_type for n in g.nodes if n.meta.get("phase") == "backward"]
    assert ops == ["ConvGradWeight"]
    node = g.nodes[-1]
    assert node.domain == "rctc" and node.meta["grad_role"] == "weight" and node.meta["grad_input"] == 1
    assert [v.name for v in node.inputs] == ["R", "x"]
    assert node.attrs == {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1],
                          "group": 1, "weight_shape": [3, 2, 3, 3]}


def test_conv_grad_node_conventions() -> None:
    rng = np.random.default_rng(2)
    ins = {"x": _rand(rng, 1, 4, 6, 6), "w": _rand(rng, 4, 2, 3, 3), "b": _rand(rng, 4)}
    g, _, _ = _backward("Conv", ins, {"group": 2, "pads": [1, 0, 0, 1]}, (1, 4, 5, 5), ["x", "w", "b"])
    by_op = {n.op_type: n for n in g.nodes if n.meta.get("phase") == "backward"}
    assert set(by_op) == {"ConvGradInput", "ConvGradWeight", "ConvGradBias"}
    gi = by_op["ConvGradInput"]
    assert [v.name for v in gi.inputs] == ["R", "w"] and gi.meta["grad_role"] == "data"
    assert gi.attrs["input_shape"] == [1, 4, 6, 6] and gi.attrs["pads"] == [1, 0, 0, 1] and gi.attrs["group"] == 2
    assert [v.name for v in by_op["ConvGradBias"].inputs] == ["R"]
    assert by_op["ConvGradBias"].meta["grad_role"] == "bias"


def test_conv_grad_float32_stays_float32() -> None:
    rng = np.random.default_rng(3)
    x, w = _rand(rng, 2, 4, 6, 6).astype(np.float32), _rand(rng, 4, 2, 3, 3).astype(np.float32)
    b = _rand(rng, 4).astype(np.float32)
    _, grads, _ = _backward("Conv", {"x": x, "w": w, "b": b}, {"group": 2, "strides": [2, 2]}, (2, 4, 2, 2),
                            ["x", "w", "b"])
    assert all(v.dtype == np.float32 for v in grads.values())
    _, g64, _ = _backward("Conv", {"x": x.astype(np.float64), "w": w.astype(np.float64), "b": b.astype(np.float64)},
                          {"group": 2, "strides": [2, 2]}, (2, 4, 2, 2), ["x", "w", "b"])
    for k in grads:
        np.testing.assert_allclose(grads[k], g64[k], rtol=1e-4, atol=1e-4)


def test_conv_grad_vs_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, w, b = _rand(rng, 2, 4, 9, 8), _rand(rng, 6, 2, 3, 3), _rand(rng, 6)
    attrs = {"group": 2, "strides": [2, 2], "dilations": [2, 1], "pads": [2, 1, 2, 1]}
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.conv2d(xt, wt, bt, stride=2, padding=(2, 1), dilation=(2, 1), groups=2)
    _, grads, r = _backward("Conv", {"x": x, "w": w, "b": b}, attrs, tuple(y.shape), ["x", "w", "b"])
    (y * torch.tensor(r)).sum().backward()
    for k, t in (("x", xt), ("w", wt), ("b", bt)):
        np.testing.assert_allclose(grads[k], t.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


# ----------------------------------------------------------------------------- Gemm
GEMM_C = [None, (5,), (1, 5), (3, 1), (3, 5), ()]


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.7, -1.5)])
@pytest.mark.parametrize("c_shape", GEMM_C)
def test_gemm_grad_fd(trans_b: int, alpha: float, beta: float, c_shape: tuple | None) -> None:
    rng = np.random.default_rng(5)
    inputs = {"a": _rand(rng, 3, 4), "b": _rand(rng, *((5, 4) if trans_b else (4, 5)))}
    inputs["c"] = None if c_shape is None else _rand(rng, *c_shape)
    if c_shape is None:
        del inputs["c"]
    check_op_grad("Gemm", inputs, {"transB": trans_b, "alpha": alpha, "beta": beta})


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_grad_fd_trans_a(trans_b: int) -> None:
    rng = np.random.default_rng(6)
    inputs = {"a": _rand(rng, 4, 3), "b": _rand(rng, *((5, 4) if trans_b else (4, 5))), "c": _rand(rng, 5)}
    check_op_grad("Gemm", inputs, {"transA": 1, "transB": trans_b, "alpha": 1.3, "beta": 0.5})


def test_gemm_grad_nodes_are_separate_tagged_gemms() -> None:
    rng = np.random.default_rng(7)
    ins = {"a": _rand(rng, 3, 4), "w": _rand(rng, 5, 4), "c": _rand(rng, 5)}
    g, _, _ = _backward("Gemm", ins, {"transB": 1}, (3, 5), ["a", "w", "c"])
    bwd = [n for n in g.nodes if n.meta.get("phase") == "backward"]
    gemms = {n.meta["grad_role"]: n for n in bwd if n.op_type == "Gemm"}
    assert set(gemms) == {"data", "weight"}
    assert gemms["data"].outputs[0].name == "grad::a" and gemms["weight"].outputs[0].name == "grad::w"
    assert [n.op_type for n in bwd if n.meta.get("grad_role") == "bias"] == ["ReduceSumTo"]
    assert all(n.attrs.get("transA", 0) == 0 for n in gemms.values())


def test_gemm_grad_vs_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    a, w, c = _rand(rng, 6, 4), _rand(rng, 3, 4), _rand(rng, 1, 3)
    at, wt, ct = (torch.tensor(v, requires_grad=True) for v in (a, w, c))
    y = 0.5 * at @ wt.T + 2.0 * ct
    _, grads, r = _backward("Gemm", {"a": a, "w": w, "c": c}, {"transB": 1, "alpha": 0.5, "beta": 2.0}, (6, 3),
                            ["a", "w", "c"])
    (y * torch.tensor(r)).sum().backward()
    for k, t in (("a", at), ("w", wt), ("c", ct)):
        np.testing.assert_allclose(grads[k], t.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


# ----------------------------------------------------------------------------- MatMul
MATMUL_CASES = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),  # batch of rows times a weight: one Gemm per gradient
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 5)),  # both broadcast: batch (2, 3)
    ((3, 4), (2, 4, 5)),  # A broadcast over B's batch
    ((1, 3, 4), (2, 4, 5)),
    ((2, 3, 4), (1, 4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4,)),
    ((4,), (2, 4, 5)),
]


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_CASES)
def test_matmul_grad_fd(a_shape: tuple, b_shape: tuple) -> None:
    rng = np.random.default_rng(9)
    check_op_grad("MatMul", {"a": _rand(rng, *a_shape), "b": _rand(rng, *b_shape)})


def test_matmul_linear_layer_weight_grad_is_one_gemm() -> None:
    rng = np.random.default_rng(10)
    g, _, _ = _backward("MatMul", {"a": _rand(rng, 2, 3, 4), "w": _rand(rng, 4, 5)}, {}, (2, 3, 5), ["w"])
    products = [n for n in g.nodes if "grad_role" in n.meta]
    assert [(n.op_type, n.meta["grad_role"]) for n in products] == [("Gemm", "weight")]
    assert products[0].attrs.get("transA", 0) == 0 and products[0].outputs[0].shape == (4, 5)
    assert products[0].inputs[0].producer.op_type == "Transpose"
    assert products[0].inputs[0].shape == (4, 6)  # all 2*3 rows in one product


def test_matmul_grad_vs_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    a, w = _rand(rng, 2, 1, 3, 4), _rand(rng, 3, 4, 5)
    at, wt = torch.tensor(a, requires_grad=True), torch.tensor(w, requires_grad=True)
    y = at @ wt
    _, grads, r = _backward("MatMul", {"a": a, "w": w}, {}, tuple(y.shape), ["a", "w"])
    (y * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(grads["a"], at.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["w"], wt.grad.numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- pooling
MAXPOOL_CASES = [
    ((2, 3, 6, 6), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 5, 6), {"kernel_shape": [3, 3], "strides": [1, 1]}),  # overlapping windows
    ((1, 2, 6, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),  # ceil-mode overhang
    ((1, 2, 7, 6), {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [1, 2]}),
    ((1, 2, 5, 5), {"kernel_shape": [3, 2], "pads": [1, 0, 0, 1], "strides": [2, 1]}),  # asymmetric pads
    ((1, 2, 5, 5), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((2, 2, 9), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),  # 1-D
]


@pytest.mark.parametrize("x_shape,attrs", MAXPOOL_CASES)
def test_maxpool_grad_fd(x_shape: tuple, attrs: dict) -> None:
    rng = np.random.default_rng(12)
    check_op_grad("MaxPool", {"x": _rand(rng, *x_shape)}, attrs)


def test_maxpool_grad_ties_vs_torch() -> None:
    """Ties (integer-valued input) route the gradient to the first maximum, as PyTorch."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(13).integers(0, 3, size=(2, 3, 7, 7)).astype(np.float64)
    xt = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.max_pool2d(xt, 3, stride=2, padding=1)
    _, grads, r = _backward("MaxPool", {"x": x}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
                            tuple(y.shape), ["x"])
    (y * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-12, atol=1e-12)


AVGPOOL_CASES = [
    ((2, 3, 6, 6), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 0}),
    ((1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ((1, 2, 5, 6), {"kernel_shape": [3, 2], "pads": [1, 0, 0, 1], "count_include_pad": 1}),
    ((1, 2, 6, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 5, 5), {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((2, 2, 9), {"kernel_shape": [4], "strides": [3], "pads": [2, 1]}),
]


@pytest.mark.parametrize("x_shape,attrs", AVGPOOL_CASES)
def test_avgpool_grad_fd(x_shape: tuple, attrs: dict) -> None:
    rng = np.random.default_rng(14)
    check_op_grad("AveragePool", {"x": _rand(rng, *x_shape)}, attrs)


@pytest.mark.parametrize("include_pad", [0, 1])
def test_avgpool_grad_vs_torch(include_pad: int) -> None:
    torch = pytest.importorskip("torch")
    x = _rand(np.random.default_rng(15), 2, 3, 7, 6)
    xt = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.avg_pool2d(xt, 3, stride=2, padding=1, count_include_pad=bool(include_pad))
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": include_pad}
    _, grads, r = _backward("AveragePool", {"x": x}, attrs, tuple(y.shape), ["x"])
    (y * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("x_shape", [(2, 3, 4, 5), (2, 3, 6), (1, 2, 2, 3, 2)])
def test_global_pool_grad_fd(op: str, x_shape: tuple) -> None:
    check_op_grad(op, {"x": _rand(np.random.default_rng(16), *x_shape)})


def test_global_average_pool_grad_vs_torch() -> None:
    torch = pytest.importorskip("torch")
    x = _rand(np.random.default_rng(17), 2, 3, 4, 5)
    xt = torch.tensor(x, requires_grad=True)
    y = xt.mean(dim=(2, 3), keepdim=True)
    _, grads, r = _backward("GlobalAveragePool", {"x": x}, {}, (2, 3, 1, 1), ["x"])
    (y * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_pool_grads_keep_float32() -> None:
    x = _rand(np.random.default_rng(18), 1, 2, 5, 5).astype(np.float32)
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    for op, a, shape in (("MaxPool", attrs, (1, 2, 3, 3)), ("AveragePool", attrs, (1, 2, 3, 3)),
                         ("GlobalAveragePool", {}, (1, 2, 1, 1))):
        g, grads, _ = _backward(op, {"x": x}, a, shape, ["x"])
        assert grads["x"].dtype == np.float32 and grads["x"].shape == x.shape, op
        bwd = [n for n in g.nodes if n.meta.get("phase") == "backward"]
        assert [n.op_type for n in bwd] == [f"{op}Grad"] and bwd[0].domain == "rctc"
        assert "auto_pad" not in bwd[0].attrs

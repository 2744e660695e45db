"""Activations (runtime/kernels/activations.py, grad_activations.py, passes/grad_rules/activations.py):
forward against onnxruntime, gradients against finite differences (float64) and, at the kinks,
against PyTorch; a model using them (GELU as PyTorch exports it) trains in every mode and exports."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import rctc
from rctc.errors import UnsupportedOpError
from tests.passes.gradcheck import check_op_grad
from tests.runtime.test_forward_kernels import check

RNG = np.random.default_rng(0)


def _x(lo: float = -5.0, hi: float = 5.0, shape: tuple = (3, 41)) -> np.ndarray:
    x = np.linspace(lo, hi, math.prod(shape)).reshape(shape)
    return (x + RNG.uniform(-0.01, 0.01, shape)).astype(np.float32)


# (op, attrs, opset, input range)
FORWARD = [
    ("HardSigmoid", {}, 18, (-5, 5)),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 18, (-5, 5)),
    ("HardSwish", {}, 18, (-6, 6)),
    ("Elu", {}, 18, (-5, 5)),
    ("Elu", {"alpha": 0.5}, 18, (-5, 5)),
    ("Selu", {}, 18, (-5, 5)),
    ("Celu", {"alpha": 2.0}, 18, (-5, 5)),
    ("Softplus", {}, 18, (-30, 30)),
    ("Softsign", {}, 18, (-9, 9)),
    ("Erf", {}, 18, (-4, 4)),
    ("Log", {}, 18, (0.01, 50)),
    ("Abs", {}, 18, (-5, 5)),
    ("Reciprocal", {}, 18, (0.1, 9)),
]


@pytest.mark.parametrize("op,attrs,opset,span", FORWARD, ids=[f"{c[0]}{c[1] or ''}" for c in FORWARD])
def test_forward_matches_onnxruntime(op: str, attrs: dict, opset: int, span: tuple) -> None:
    x = _x(*span)
    if op in ("HardSwish", "HardSigmoid", "Abs", "Elu"):
        x[0, :5] = [-3.0, 3.0, 0.0, -2.5, 2.5]  # kinks and the clip boundaries
    check(op, [x], attrs, opset=opset, rtol=2e-6, atol=2e-7)


# (op, attrs, input range avoiding kinks)
GRADIENTS = [
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, [(-4.0, -1.5), (-1.2, 1.7), (2.2, 4.0)]),
    ("HardSwish", {}, [(-5.0, -3.2), (-2.8, 2.8), (3.2, 5.0)]),
    ("Elu", {"alpha": 0.7}, [(-4.0, -0.1), (0.1, 4.0)]),
    ("Selu", {}, [(-4.0, -0.1), (0.1, 4.0)]),
    ("Celu", {"alpha": 1.5}, [(-4.0, -0.1), (0.1, 4.0)]),
    ("Softplus", {}, [(-20.0, 20.0)]),
    ("Softsign", {}, [(-6.0, 6.0)]),
    ("Erf", {}, [(-3.0, 3.0)]),
    ("Exp", {}, [(-3.0, 3.0)]),
    ("Log", {}, [(0.2, 9.0)]),
    ("Sqrt", {}, [(0.2, 9.0)]),
    ("Reciprocal", {}, [(0.3, 5.0)]),
    ("Abs", {}, [(-4.0, -0.1), (0.1, 4.0)]),
    ("Neg", {}, [(-4.0, 4.0)]),
]


@pytest.mark.parametrize("op,attrs,spans", GRADIENTS, ids=[f"{c[0]}{c[1] or ''}" for c in GRADIENTS])
def test_gradient_matches_finite_differences(op: str, attrs: dict, spans: list) -> None:
    x = np.concatenate([np.linspace(lo, hi, 9) for lo, hi in spans]).reshape(1, -1)
    # erf is a 1e-7-accurate fit, so its finite differences carry that much noise
    rtol = 2e-5 if op == "Erf" else 1e-5
    check_op_grad(op, {"x": x.astype(np.float64)}, attrs, rtol=rtol, atol=1e-7)


def test_pow_gradient_wrt_the_base_and_a_broadcast_base() -> None:
    rng = np.random.default_rng(1)
    check_op_grad("Pow", {"x": rng.uniform(0.5, 2.0, (3, 4)), "p": np.array([1.5, 2.0, 3.0, -1.0])}, wrt=["x"])
    check_op_grad("Pow", {"x": rng.uniform(0.5, 2.0, (1, 4)), "p": rng.uniform(1.0, 3.0, (3, 4))}, wrt=["x"])


def test_pow_with_a_trainable_exponent_is_refused() -> None:
    with pytest.raises(UnsupportedOpError, match="exponent 'p' is on a gradient path"):
        check_op_grad("Pow", {"x": np.full((2, 2), 1.5), "p": np.full((2, 2), 2.0)}, wrt=["x", "p"])


@pytest.mark.parametrize("op,fn", [
    ("HardSwish", "hardswish"), ("HardSigmoid", "hardsigmoid"), ("Elu", "elu"), ("Selu", "selu"),
    ("Celu", "celu"), ("Abs", "abs"), ("Softplus", "softplus")])
def test_gradient_at_the_kinks_matches_pytorch(op: str, fn: str) -> None:
    torch = pytest.importorskip("torch")
    from rctc.ir import Node, Value
    from rctc.runtime.kernels import KERNELS, KernelContext

    x = np.array([-3.0, -2.5, -1e-3, 0.0, 1e-3, 2.5, 3.0, 3.5, -3.5], np.float32)
    dy = np.linspace(0.5, 1.5, x.size).astype(np.float32)
    # PyTorch's hardsigmoid is ONNX HardSigmoid(alpha=1/6, beta=1/2)
    attrs = {"alpha": 1 / 6, "beta": 0.5} if op == "HardSigmoid" else {}
    node = Node(f"{op}Grad", f"{op}Grad", [], [Value("dx", x.shape, np.float32)], attrs, domain="rctc")
    got = KERNELS[f"{op}Grad"](KernelContext(), node, dy, x)
    xt = torch.tensor(x, requires_grad=True)
    f = torch.abs if fn == "abs" else getattr(torch.nn.functional, fn)
    f(xt).backward(torch.tensor(dy))
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-6, atol=1e-7)


def _act_model() -> onnx.ModelProto:
    """x[N,8] -> four Gemm + activation layers (HardSwish; GELU as PyTorch exports it,
    ``x * (1 + Erf(x / sqrt 2)) * 0.5``; Elu; Softsign) -> Gemm -> logits[N,4]."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(np.array(v, np.float32), n)
             for n, v in (("sqrt2", math.sqrt(2.0)), ("one", 1.0), ("half", 0.5))]
    nodes = []
    prev, width = "x", 8
    for i, act in enumerate(["HardSwish", "GELU", "Elu", "Softsign"]):
        w = (rng.standard_normal((16, width)) / np.sqrt(width)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(16, np.float32), f"b{i}")]
        h = f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [h], transB=1))
        if act == "GELU":
            nodes += [helper.make_node("Div", [h, "sqrt2"], [f"{h}.s"]),
                      helper.make_node("Erf", [f"{h}.s"], [f"{h}.e"]),
                      helper.make_node("Add", [f"{h}.e", "one"], [f"{h}.p"]),
                      helper.make_node("Mul", [h, f"{h}.p"], [f"{h}.m"]),
                      helper.make_node("Mul", [f"{h}.m", "half"], [f"a{i}"])]
        else:
            nodes.append(helper.make_node(act, [h], [f"a{i}"], **({"alpha": 0.5} if act == "Elu" else {})))
        prev, width = f"a{i}", 16
    w = (rng.standard_normal((4, 16)) / 4).astype(np.float32)
    inits += [numpy_helper.from_array(w, "wo"), numpy_helper.from_array(np.zeros(4, np.float32), "bo")]
    nodes.append(helper.make_node("Gemm", [prev, "wo", "bo"], ["logits"], transB=1))
    graph = helper.make_graph(nodes, "acts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("mode", ["rct", "qat", "fp32"])
def test_model_with_activations_trains_and_exports(mode: str, tmp_path) -> None:  # noqa: ANN001
    proto = _act_model()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0).astype(np.int64)
    m = rctc.compile(proto, mode=mode, batch_size=16, lr=0.1, seed=0)
    before = m.evaluate(x, y)["loss"]
    m.train(x, y, epochs=15, seed=0)
    after = m.evaluate(x, y)["loss"]
    assert np.isfinite(after) and after < 0.8 * before
    out = tmp_path / "m.onnx"
    m.export(out)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x[:16]})[0]
    np.testing.assert_allclose(logits, m.predict(x[:16])["logits"], rtol=1e-4, atol=1e-4)


def test_erf_over_the_whole_float_range() -> None:
    from rctc.runtime.kernels.activations import erf

    x = np.concatenate([np.linspace(-9, 9, 20001), [0.0, -0.0, 1e-30, -1e-40, 0.4999, 0.5, 6.5, 1e30, -3e38]])
    ref = np.array([math.erf(v) for v in x])
    got32 = erf(x.astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(got32, ref, rtol=5e-7, atol=3e-45)  # subnormals carry few bits
    np.testing.assert_allclose(erf(x), ref, rtol=1e-7, atol=5e-8)  # float64 input: the fit's accuracy
    special = erf(np.array([np.inf, -np.inf, np.nan], np.float32))
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2])


def test_softplus_is_stable_far_out() -> None:
    from rctc.ir import Node, Value
    from rctc.runtime.kernels import KERNELS, KernelContext

    x = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 89.0, 100.0, 1e4, 3e38], np.float32)
    node = Node("Softplus", "sp", [], [Value("y", x.shape, np.float32)], {})
    got = KERNELS["Softplus"](KernelContext(), node, x)
    np.testing.assert_allclose(got, np.logaddexp(0.0, x.astype(np.float64)), rtol=1e-6, atol=1e-30)


def test_pow_gradient_at_zero_and_negative_bases_matches_pytorch() -> None:
    torch = pytest.importorskip("torch")
    from rctc.ir import Node, Value
    from rctc.runtime.kernels import KERNELS, KernelContext

    x = np.array([0.0, 0.0, 0.0, 2.0, -2.0, -2.0, -1.5], np.float32)
    p = np.array([0.0, 1.0, 2.0, 0.0, 2.0, 3.0, 1.5], np.float32)
    dy = np.linspace(0.5, 1.5, x.size).astype(np.float32)
    node = Node("PowGrad", "pg", [], [Value("dx", x.shape, np.float32)], {}, domain="rctc")
    got = KERNELS["PowGrad"](KernelContext(), node, dy, x, p)
    xt = torch.tensor(x, requires_grad=True)
    (xt ** torch.tensor(p)).backward(torch.tensor(dy))
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-6, equal_nan=True)

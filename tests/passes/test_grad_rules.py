"""Gradient rules against central finite differences in float64 (and the losses against torch).

Each rule is run through ``check_op_grad`` (one-node graph, random output seeds), including
broadcasting both ways, scalar operands, BatchNorm in training mode, LayerNorm over one and two
axes, Gather with repeated indices; hand-built graphs check gradient accumulation when one
value feeds several consumers (or the same node twice).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rctc.ir import Graph, Value
from rctc.node_ids import assign_node_ids
from rctc.passes.build_backward import backward
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext
from tests.passes.gradcheck import check_op_grad

F = np.float64


def rnd(*shape: int, seed: int = 0, lo: float | None = None) -> np.ndarray:
    r = np.random.default_rng(seed).standard_normal(shape)
    if lo is not None:  # keep magnitudes away from 0 (divisors, kinks)
        r = np.sign(r) * (lo + np.abs(r))
    return r.astype(F)


# ----- element-wise arithmetic with broadcasting ---------------------------------------------

BCAST = [((2, 3), (2, 3)), ((3, 1, 5), (4, 1)), ((4, 1), (3, 1, 5)), ((2, 3, 4), ()), ((), (2, 3)),
         ((1, 3), (2, 1)), ((5,), (2, 1, 5))]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("sa,sb", BCAST)
def test_binary_broadcast(op: str, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    a = rnd(*sa, seed=1)
    b = rnd(*sb, seed=2, lo=0.5 if op == "Div" else None)
    check_op_grad(op, {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Mul", "Div"])
def test_binary_one_side_only(op: str) -> None:
    check_op_grad(op, {"a": rnd(3, 4, seed=3), "b": rnd(4, seed=4, lo=0.5)}, wrt=["b"])
    check_op_grad(op, {"a": rnd(3, 4, seed=3), "b": rnd(4, seed=4, lo=0.5)}, wrt=["a"])


# ----- activations -------------------------------------------------------------------------------

@pytest.mark.parametrize("op,attrs", [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("LeakyRelu", {}),
                                      ("Sigmoid", {}), ("Tanh", {})])
def test_activations(op: str, attrs: dict[str, Any]) -> None:
    x = rnd(3, 4, 5, seed=5, lo=0.05)  # away from the kink at 0
    check_op_grad(op, {"x": x}, attrs)


def _away_from(x: np.ndarray, points: list[float], gap: float = 0.05) -> np.ndarray:
    for p in points:
        near = np.abs(x - p) < gap
        x = np.where(near, p + np.where(x >= p, gap, -gap) * 2, x)
    return x


def test_clip_inputs_relu6() -> None:
    x = _away_from(rnd(4, 6, seed=6) * 4, [0.0, 6.0])
    x[0, :3] = [7.0, 6.5, -1.0]  # both sides of both bounds
    check_op_grad("Clip", {"x": x, "min": np.array(0.0), "max": np.array(6.0)}, wrt=["x"])


def test_clip_attrs_and_one_bound() -> None:
    x = _away_from(rnd(5, 3, seed=7) * 2, [-1.0, 1.0])
    check_op_grad("Clip", {"x": x}, {"min": -1.0, "max": 1.0})
    check_op_grad("Clip", {"x": x, "min": np.array(-0.5)}, wrt=["x"])
    check_op_grad("Clip", {"x": x, "min": None, "max": np.array(0.5)}, wrt=["x"])


def test_clip_boundary_is_blocked() -> None:
    """At exactly min or max the gradient is 0 (strict inequality, like PyTorch's ReLU6)."""
    g = Graph()
    x = g.add_value("x", (4,), F, "param", np.array([0.0, 3.0, 6.0, 7.0]))
    x.trainable = True
    lo, hi = g.add_const("lo", np.array(0.0)), g.add_const("hi", np.array(6.0))
    y = g.add_node("Clip", [x, lo, hi], [("y", (4,), F)]).outputs[0]
    grads = backward(g, {y.name: g.add_const("R", np.ones(4))}, [x])
    out = Executor(g).run({}, [grads["x"].name], KernelContext(training=True))
    np.testing.assert_array_equal(out[grads["x"].name], [0.0, 1.0, 0.0, 0.0])


def test_dropout_and_identity() -> None:
    x = rnd(6, 7, seed=8)
    check_op_grad("Dropout", {"x": x}, {"ratio": 0.3}, n_out=2)
    check_op_grad("Dropout", {"x": x}, {"ratio": 0.3}, n_out=2, training=False)
    check_op_grad("Identity", {"x": x})


def test_dropout_grad_matches_mask() -> None:
    g = Graph()
    x = g.add_value("x", (50, 40), F, "param", np.ones((50, 40)))
    x.trainable = True
    node = g.add_node("Dropout", [x], [("y", (50, 40), F), ("m", (50, 40), np.bool_)], {"ratio": 0.25})
    grads = backward(g, {"y": g.add_const("R", np.ones((50, 40)))}, [x])
    assign_node_ids(g)
    out = Executor(g).run({}, ["y", "m", grads["x"].name], KernelContext(training=True))
    dx, mask = out[grads["x"].name], out["m"]
    assert node.outputs[1].name == "m" and 0 < mask.mean() < 1
    np.testing.assert_allclose(dx, mask / 0.75)
    np.testing.assert_allclose(out["y"], dx)  # y = x * mask / 0.75 with x = 1


# ----- normalisation -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 4, 3)])
def test_batchnorm_training(shape: tuple[int, ...]) -> None:
    c = shape[1]
    ins = {"x": rnd(*shape, seed=9) * 2 + 1, "scale": rnd(c, seed=10), "B": rnd(c, seed=11),
           "mean": rnd(c, seed=12), "var": np.abs(rnd(c, seed=13)) + 0.5}
    check_op_grad("BatchNormalization", ins, {"epsilon": 1e-5, "momentum": 0.9}, wrt=["x", "scale", "B"],
                  n_out=3, grad_outputs=(0,))


def test_batchnorm_inference() -> None:
    c = 3
    ins = {"x": rnd(2, c, 4, seed=14), "scale": rnd(c, seed=15), "B": rnd(c, seed=16),
           "mean": rnd(c, seed=17), "var": np.abs(rnd(c, seed=18)) + 0.5}
    check_op_grad("BatchNormalization", ins, {"epsilon": 1e-3}, wrt=["x", "scale", "B"], training=False)


@pytest.mark.parametrize("shape,axis", [((4, 6), -1), ((2, 3, 5), -1), ((2, 3, 4), 1), ((2, 3, 4), -2)])
def test_layernorm(shape: tuple[int, ...], axis: int) -> None:
    a = axis % len(shape)
    ns = shape[a:]
    ins = {"x": rnd(*shape, seed=19) * 3, "scale": rnd(*ns, seed=20), "B": rnd(*ns, seed=21)}
    check_op_grad("LayerNormalization", ins, {"axis": axis, "epsilon": 1e-5})


def test_layernorm_without_bias_and_broadcast_scale() -> None:
    check_op_grad("LayerNormalization", {"x": rnd(3, 4, seed=22), "scale": rnd(4, seed=23)}, {"epsilon": 1e-5})
    ins = {"x": rnd(2, 3, 4, seed=24), "scale": rnd(4, seed=25), "B": rnd(1, 4, seed=26)}
    check_op_grad("LayerNormalization", ins, {"axis": 1, "epsilon": 1e-5})


@pytest.mark.parametrize("attrs", [{"size": 3}, {"size": 4, "alpha": 0.5, "beta": 0.6, "bias": 2.0},
                                   {"size": 5, "alpha": 2e-4, "beta": 0.75, "bias": 1.0}], ids=str)
def test_lrn(attrs: dict[str, Any]) -> None:
    """Even sizes too (the window is asymmetric: the gradient sums over the reflected window)."""
    check_op_grad("LRN", {"x": rnd(2, 6, 3, 2, seed=27) * 2}, attrs)


def test_lrn_gradient_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    x = rnd(2, 7, 3, 3, seed=28) * 3
    r = rnd(2, 7, 3, 3, seed=29)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.local_response_norm(xt, 5, alpha=1e-2, beta=0.75, k=1.0).backward(torch.tensor(r))
    g = Graph()
    xv = g.add_value("x", x.shape, F, "param", x)
    xv.trainable = True
    g.add_node("LRN", [xv], [("y", x.shape, F)], {"size": 5, "alpha": 1e-2, "beta": 0.75})
    dx = backward(g, {"y": g.add_const("R", r)}, [xv])["x"]
    out = Executor(g).run({}, [dx.name], KernelContext(training=True))
    np.testing.assert_allclose(out[dx.name], xt.grad.numpy(), rtol=1e-10, atol=1e-12)


# ----- reductions, softmax --------------------------------------------------------------------

@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("axes,keep", [([1], 1), ([0, 2], 0), ([-1], 0), (None, 1), (None, 0)])
def test_reduce_axes_input(op: str, axes: list[int] | None, keep: int) -> None:
    ins: dict[str, np.ndarray | None] = {"x": rnd(3, 4, 5, seed=27)}
    if axes is not None:
        ins["axes"] = np.array(axes, dtype=np.int64)
    check_op_grad(op, ins, {"keepdims": keep}, wrt=["x"])


def test_reduce_axes_attr_and_noop() -> None:
    check_op_grad("ReduceMean", {"x": rnd(2, 3, 4, seed=28)}, {"axes": [1, 2], "keepdims": 0})
    check_op_grad("ReduceSum", {"x": rnd(2, 3, seed=29), "axes": np.zeros(0, np.int64)},
                  {"noop_with_empty_axes": 1}, wrt=["x"])


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape,axis", [((4, 7), -1), ((2, 5, 3), 1), ((3, 4), 0)])
def test_softmax_family(op: str, shape: tuple[int, ...], axis: int) -> None:
    check_op_grad(op, {"x": rnd(*shape, seed=30) * 2}, {"axis": axis})


# ----- shape ops ---------------------------------------------------------------------------------

def test_reshape_flatten_squeeze_unsqueeze() -> None:
    x = rnd(2, 3, 4, seed=31)
    check_op_grad("Reshape", {"x": x, "shape": np.array([4, 0, -1], np.int64)}, wrt=["x"])
    check_op_grad("Flatten", {"x": x}, {"axis": 2})
    check_op_grad("Flatten", {"x": x})
    y = rnd(2, 1, 3, 1, seed=32)
    check_op_grad("Squeeze", {"x": y, "axes": np.array([1, -1], np.int64)}, wrt=["x"])
    check_op_grad("Squeeze", {"x": y})
    check_op_grad("Unsqueeze", {"x": x, "axes": np.array([0, -1], np.int64)}, wrt=["x"])


@pytest.mark.parametrize("perm", [None, [1, 0, 2], [2, 0, 1], [-1, 0, 1]])
def test_transpose(perm: list[int] | None) -> None:
    attrs = {} if perm is None else {"perm": perm}
    check_op_grad("Transpose", {"x": rnd(2, 3, 4, seed=33)}, attrs)


def test_concat() -> None:
    ins = {"a": rnd(2, 3, 4, seed=34), "b": rnd(2, 1, 4, seed=35), "c": rnd(2, 2, 4, seed=36)}
    check_op_grad("Concat", ins, {"axis": 1})
    check_op_grad("Concat", ins, {"axis": -2}, wrt=["b"])
    check_op_grad("Concat", {"a": rnd(3, seed=37), "b": rnd(2, seed=38)}, {"axis": 0}, wrt=["a"])


@pytest.mark.parametrize("idx,axis", [([[1, 3, 1], [0, 3, 3]], 0), ([4, -1, 0, 4], 0), (2, 0), ([2, 0, 2], 1)])
def test_gather_repeated(idx: Any, axis: int) -> None:
    table = rnd(5, 3, seed=39)
    check_op_grad("Gather", {"table": table, "idx": np.array(idx, np.int64)}, {"axis": axis}, wrt=["table"])


def test_gather_grad_accumulates_exactly() -> None:
    g = Graph()
    t = g.add_value("t", (4, 2), F, "param", np.zeros((4, 2)))
    t.trainable = True
    idx = g.add_const("idx", np.array([3, 1, 3, 3], np.int64))
    y = g.add_node("Gather", [t, idx], [("y", (4, 2), F)]).outputs[0]
    r = np.arange(8, dtype=F).reshape(4, 2)
    grads = backward(g, {y.name: g.add_const("R", r)}, [t])
    got = Executor(g).run({}, [grads["t"].name])[grads["t"].name]
    want = np.zeros((4, 2))
    np.add.at(want, [3, 1, 3, 3], r)
    np.testing.assert_array_equal(got, want)


# ----- accumulation over several uses --------------------------------------------------------

def _fd_check(g: Graph, loss: Value, params: list[Value], eps: float = 1e-6) -> None:
    seed = g.add_const("seed", np.ones((), F))
    grads = backward(g, {loss.name: seed}, params)
    g.verify()
    ex = Executor(g)
    ctx = KernelContext(training=True)
    got = ex.run({}, [grads[p.name].name for p in params], ctx)
    for p in params:
        base = p.data.copy()
        num = np.zeros(base.size)
        for j in range(base.size):
            vals = []
            for s in (eps, -eps):
                pert = base.copy().reshape(-1)
                pert[j] += s
                p.data = pert.reshape(base.shape)
                vals.append(float(ex.run({}, [loss.name], KernelContext(training=True))[loss.name]))
            num[j] = (vals[0] - vals[1]) / (2 * eps)
        p.data = base
        np.testing.assert_allclose(got[grads[p.name].name], num.reshape(base.shape), rtol=1e-5, atol=1e-7,
                                   err_msg=p.name)


def _param(g: Graph, name: str, data: np.ndarray) -> Value:
    v = g.add_value(name, data.shape, data.dtype, "param", data)
    v.trainable = True
    return v


def test_accumulation_fan_out() -> None:
    """x feeds Mul(x, x), Tanh(x) and (broadcast) Add(x, w): all gradients are summed."""
    g = Graph()
    x = _param(g, "x", rnd(3, 4, seed=40))
    w = _param(g, "w", rnd(4, seed=41))
    sq = g.add_node("Mul", [x, x], [("sq", (3, 4), F)]).outputs[0]
    th = g.add_node("Tanh", [x], [("th", (3, 4), F)]).outputs[0]
    s = g.add_node("Add", [x, w], [("s", (3, 4), F)]).outputs[0]
    m = g.add_node("Mul", [sq, th], [("m", (3, 4), F)]).outputs[0]
    d = g.add_node("Div", [m, s], [("d", (3, 4), F)]).outputs[0]
    r = g.add_const("r", rnd(3, 4, seed=42))
    e = g.add_node("Mul", [d, r], [("e", (3, 4), F)]).outputs[0]
    loss = g.add_node("ReduceSum", [e], [("loss", (), F)], {"keepdims": 0}).outputs[0]
    _fd_check(g, loss, [x, w])


def test_small_network_end_to_end() -> None:
    """Embedding -> LayerNorm -> Relu -> Concat -> Softmax cross-entropy, with a shared table."""
    g = Graph()
    emb = _param(g, "emb", rnd(6, 4, seed=43))
    scale = _param(g, "scale", 1 + 0.1 * rnd(4, seed=44))
    bias = _param(g, "bias", rnd(4, seed=45))
    ids = g.add_const("ids", np.array([5, 2, 5], np.int64))
    e = g.add_node("Gather", [emb, ids], [("e", (3, 4), F)]).outputs[0]
    ln = g.add_node("LayerNormalization", [e, scale, bias], [("ln", (3, 4), F)], {"epsilon": 1e-5}).outputs[0]
    h = g.add_node("LeakyRelu", [ln], [("h", (3, 4), F)], {"alpha": 0.1}).outputs[0]
    t = g.add_node("Transpose", [emb], [("t", (4, 6), F)], {"perm": [1, 0]}).outputs[0]
    z = g.add_node("MatMul", [h, t], [("z", (3, 6), F)]).outputs[0] if _has_matmul() else None
    if z is None:
        pytest.skip("MatMul kernel not available")
    c = g.add_node("Concat", [z, h], [("c", (3, 10), F)], {"axis": 1}).outputs[0]
    labels = g.add_const("labels", np.array([1, 9, 0], np.int64))
    mask = g.add_const("mask", np.array([1.0, 1.0, 0.0]))
    loss = g.add_node("SoftmaxCrossEntropy", [c, labels, mask], [("loss", (), F)], domain="rctc").outputs[0]
    _fd_check(g, loss, [emb, scale, bias])


def _has_matmul() -> bool:
    from rctc.passes.grad_rules import RULES
    from rctc.runtime.kernels import KERNELS

    return "MatMul" in KERNELS and "MatMul" in RULES


# ----- losses ------------------------------------------------------------------------------------

def test_cross_entropy_fd() -> None:
    ins = {"logits": rnd(5, 4, seed=46) * 3, "labels": np.array([0, 3, 3, 1, 2], np.int64),
           "mask": np.array([1.0, 1.0, 0.0, 1.0, 1.0])}
    check_op_grad("SoftmaxCrossEntropy", ins, wrt=["logits"], domain="rctc")
    ins["mask"] = np.zeros(5)
    check_op_grad("SoftmaxCrossEntropy", ins, wrt=["logits"], domain="rctc")


def test_mse_fd() -> None:
    ins = {"pred": rnd(4, 3, 2, seed=47), "target": rnd(4, 3, 2, seed=48), "mask": np.array([1.0, 0.0, 1.0, 1.0])}
    check_op_grad("MSELoss", ins, wrt=["pred", "target"], domain="rctc")
    check_op_grad("MSELoss", {"pred": rnd(5, seed=49), "target": rnd(5, seed=50), "mask": np.ones(5)},
                  wrt=["pred"], domain="rctc")


def _loss_and_grad(op: str, x: np.ndarray, other: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = Graph()
    p = _param(g, "x", x)
    o = g.add_const("other", other)
    m = g.add_const("mask", mask)
    loss = g.add_node(op, [p, o, m], [("loss", (), x.dtype)], domain="rctc").outputs[0]
    grads = backward(g, {loss.name: g.add_const("seed", np.ones((), x.dtype))}, [p])
    out = Executor(g).run({}, [loss.name, grads["x"].name], KernelContext(training=True))
    return out[loss.name], out[grads["x"].name]


@pytest.mark.parametrize("masked", [False, True])
def test_cross_entropy_matches_torch(masked: bool) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(51)
    z = (rng.standard_normal((8, 5)) * 4).astype(np.float32)
    z[0, 2] = 60.0  # large logit: stability
    y = rng.integers(0, 5, 8).astype(np.int64)
    mask = np.ones(8, np.float32)
    if masked:
        mask[[1, 6]] = 0
        y[1] = 77  # a padded row's label is ignored
    loss, grad = _loss_and_grad("SoftmaxCrossEntropy", z, y, mask)
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    zt = torch.tensor(z, requires_grad=True)
    keep = torch.tensor(mask.astype(bool))
    yt = torch.tensor(np.where(mask > 0, y, 0))
    ref = torch.nn.functional.cross_entropy(zt[keep], yt[keep])
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-6)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("masked", [False, True])
def test_mse_matches_torch(masked: bool) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(52)
    pred = rng.standard_normal((6, 3, 2)).astype(np.float32)
    tgt = rng.standard_normal((6, 3, 2)).astype(np.float32)
    mask = np.ones(6, np.float32)
    if masked:
        mask[[0, 4]] = 0
        tgt[0] = np.nan  # a padded row may hold anything
    loss, grad = _loss_and_grad("MSELoss", pred, tgt, mask)
    pt = torch.tensor(pred, requires_grad=True)
    keep = torch.tensor(mask.astype(bool))
    ref = torch.nn.functional.mse_loss(pt[keep], torch.tensor(tgt)[keep], reduction="mean")
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-6)
    np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-5, atol=1e-8)

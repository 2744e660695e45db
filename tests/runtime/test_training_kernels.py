"""Training kernels: optimiser updates against torch.optim.SGD, ReduceSumTo against np.sum,
dtype preservation and no in-place modification of inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rctc.ir import Node, Value
from rctc.runtime.kernels import KERNELS, KernelContext


def _node(op: str, attrs: dict[str, Any], outs: list[tuple[tuple[int, ...], Any]]) -> Node:
    return Node(op, op, [], [Value(f"o{i}", s, d) for i, (s, d) in enumerate(outs)], attrs, domain="rctc")


def _run(op: str, attrs: dict[str, Any], outs: list[tuple[tuple[int, ...], Any]], *args: np.ndarray) -> Any:
    copies = [a.copy() for a in args]
    res = KERNELS[op](KernelContext(training=True), _node(op, attrs, outs), *args)
    for a, c in zip(args, copies):
        np.testing.assert_array_equal(a, c, err_msg=f"{op} modified an input in place")
    return res


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.0, 0.01), (0.9, 0.0), (0.9, 5e-4)])
def test_sgd_matches_torch(dtype: Any, momentum: float, wd: float) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3)).astype(dtype)
    grads = [rng.standard_normal((4, 3)).astype(dtype) for _ in range(3)]
    lr = np.array(0.05, np.float32)  # the graph input is float32
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    p = torch.nn.Parameter(torch.tensor(w0, dtype=tdt))
    opt = torch.optim.SGD([p], lr=float(lr), momentum=momentum, weight_decay=wd)
    w, v = w0.copy(), np.zeros_like(w0)
    for g in grads:
        p.grad = torch.tensor(g, dtype=tdt)
        opt.step()
        if momentum:
            w_new, v_new = _run("MomentumUpdate", {"momentum": momentum, "weight_decay": wd},
                                [(w.shape, w.dtype), (v.shape, v.dtype)], w, g, v, lr)
            assert v_new.dtype == dtype and v_new is not v
            v = v_new
        else:
            w_new = _run("SGDUpdate", {"weight_decay": wd}, [(w.shape, w.dtype)], w, g, lr)
        assert w_new.dtype == dtype and w_new is not w and not np.shares_memory(w_new, w)
        w = w_new
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(w, p.detach().numpy(), rtol=tol, atol=tol)


def test_momentum_first_step_equals_gradient() -> None:
    w = np.ones(3, np.float32)
    g = np.array([1.0, -2.0, 0.5], np.float32)
    v = np.zeros(3, np.float32)
    w1, v1 = _run("MomentumUpdate", {"momentum": 0.9, "weight_decay": 0.0}, [((3,), np.float32)] * 2,
                  w, g, v, np.array(0.5, np.float32))
    np.testing.assert_array_equal(v1, g)
    np.testing.assert_array_equal(w1, w - np.float32(0.5) * g)


@pytest.mark.parametrize("src,dst", [((3, 4, 5), (4, 1)), ((3, 4, 5), (1, 4, 5)), ((3, 4, 5), ()),
                                     ((2, 1, 6), (1, 1, 6)), ((2, 3), (2, 3)), ((7,), (1,)), ((2, 3, 4), (3, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduce_sum_to(src: tuple[int, ...], dst: tuple[int, ...], dtype: Any) -> None:
    x = np.random.default_rng(1).standard_normal(src).astype(dtype)
    got = _run("ReduceSumTo", {"shape": list(dst)}, [(dst, dtype)], x)
    lead = len(src) - len(dst)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(dst) if d == 1 and src[lead + i] != 1)
    want = np.sum(x.astype(np.float64), axis=axes).reshape(dst)
    assert got.shape == dst and got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # the defining property: the adjoint of broadcasting, <sum_to(x), r> == <x, broadcast(r)>
    r = np.random.default_rng(2).standard_normal(dst)
    np.testing.assert_allclose(np.sum(got * r), np.sum(x * np.broadcast_to(r, src)), rtol=1e-5)


def test_reduce_sum_to_rejects_incompatible() -> None:
    with pytest.raises(ValueError):
        _run("ReduceSumTo", {"shape": [3]}, [((3,), np.float32)], np.ones((2, 4), np.float32))


def test_loss_kernels_float32_and_stability() -> None:
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], np.float32)
    y = np.array([0, 2], np.int64)
    mask = np.ones(2, np.float32)
    loss = _run("SoftmaxCrossEntropy", {}, [((), np.float32)], z, y, mask)
    assert loss.dtype == np.float32 and np.isfinite(loss)
    np.testing.assert_allclose(loss, (0.0 + np.log(3.0)) / 2, rtol=1e-6)
    g = _run("SoftmaxCrossEntropyGrad", {}, [((2, 3), np.float32)], np.array(1.0, np.float32), z, y, mask)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="label 3"):
        _run("SoftmaxCrossEntropy", {}, [((), np.float32)], z, np.array([0, 3], np.int64), mask)
    mse = _run("MSELoss", {}, [((), np.float32)], np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32),
               np.array([0.0, 0.0], np.float32))
    assert mse.dtype == np.float32 and mse == 0.0  # all masked: 0 / max(0, 1)


def test_padded_rows_never_leak_nan() -> None:
    """Rows with mask 0 may hold garbage (NaN logits, any label): loss and gradient stay finite."""
    z = np.array([[1.0, 2.0, 0.5], [np.nan, np.inf, 0.0]], np.float32)
    y = np.array([1, -5], np.int64)
    mask = np.array([1.0, 0.0], np.float32)
    loss = _run("SoftmaxCrossEntropy", {}, [((), np.float32)], z, y, mask)
    g = _run("SoftmaxCrossEntropyGrad", {}, [((2, 3), np.float32)], np.array(1.0, np.float32), z, y, mask)
    p = np.exp(z[0] - z[0].max())
    p /= p.sum()
    np.testing.assert_allclose(loss, -np.log(p[1]), rtol=1e-6)
    np.testing.assert_allclose(g[0], p - np.eye(3, dtype=np.float32)[1], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(g[1], 0.0)

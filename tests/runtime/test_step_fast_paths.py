"""The per-step fast paths (executor loop, losses, integer updates, small kernels) against
independent references.

* Integer updates: every node of a few real rct training steps (MLP, LeNet) is checked, on the
  inputs it received and the generator state it started from, against the update written from
  its definition in plain numpy: ``u`` from the int64 weight-gradient product (or, for a bias,
  the int64 gradient accumulator the update reads), the stochastic
  rounding noise taken straight from ``rctc.rng.random_words(seed, step, node_id, i)`` (the
  top 24 bits of word i for element i), the sum and clip in int64; the controller statistic
  each records (fixed-point Gavg, saturated count) against its definition in rationals.
* Losses: float64 references, padded rows, label checks.
* Executor: the plain loop and the observed loop (op timing / ``on_node``) train bit-identically;
  errors name the node.
* Small-array paths (ReLU, masked gradients, ReduceSumTo, Reshape, Transpose, Gather, int_matmul,
  blas_matmul) bit for bit against the general numpy formulas.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import rctc
from rctc.bitwidth_rule import STATS_KEY
from rctc.ir import Graph, Node, Value
from rctc.models import build, input_spec, num_classes
from rctc.rng import random_words
from rctc.runtime.executor import Executor, KernelError
from rctc.runtime.kernels import KERNELS, KernelContext
from rctc.runtime.kernels.int_products import INT_PRODUCTS
from rctc.runtime.trainer import Trainer


def _node(op: str, attrs: dict[str, Any], outs: list[tuple[tuple[int, ...], Any]], **meta: Any) -> Node:
    n = Node(op, op, [], [Value(f"o{i}", s, d) for i, (s, d) in enumerate(outs)], attrs, domain="rctc")
    n.meta.update(meta)
    return n


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


# ----- integer updates ------------------------------------------------------------------------

def _ref_update(q: np.ndarray, u: np.ndarray, bits: int, rounding: str, key: tuple[int, int, int]) -> tuple:
    """(new q, gavg, saturation) from the definition of the update; ``key`` = (seed, step, node_id)."""
    n = u.size
    if rounding == "nearest":
        du = np.rint(u)
    else:  # floor(u) + (r < frac(u)), r = U / 2^24: the top 24 bits of word i of the node's stream
        r = (random_words(*key, 0, n) >> 8).reshape(u.shape)
        fl = np.floor(u)
        du = fl + (r.astype(np.float64) < (u.astype(np.float64) - fl) * 2.0**24)
    qmax = 2 ** (bits - 1) - 1
    du = np.clip(du, -(2.0**40), 2.0**40)  # far beyond any bound: clips alike, and fits int64
    new = np.clip(q.astype(np.int64) + du.astype(np.int64), -qmax, qmax)
    gavg = float(np.abs(u.astype(np.float64)).mean())
    sat = np.count_nonzero(np.abs(new) == qmax) / n
    return new.astype(q.dtype), gavg, sat


def _ref_g(node: Node, args: list[np.ndarray], u: np.ndarray) -> int:
    """The controller's fixed-point Gavg by its definition (rctc/bitwidth_rule.py), in rationals:
    from the exact accumulator where u = acc * scale (FusedIntUpdate / IntAccSGDUpdate without
    weight decay), else from the float sum of |u| as the kernel forms it."""
    a = node.attrs
    if node.op_type in ("FusedIntUpdate", "IntAccSGDUpdate") and not a.get("weight_decay"):
        acc, ea = (args[3].astype(np.int64), int(args[4])) if node.op_type == "IntAccSGDUpdate" else \
            _ref_product(a, args)
        scale = Fraction(-float(args[-1]) * float(a.get("alpha", 1.0)) * 2.0 ** (ea - int(args[1])))
        u_exact = Fraction(0)
        for v in acc.ravel().tolist():
            u_exact += abs(v * scale)
    else:
        u_exact = Fraction(float(np.add.reduce(np.abs(u), axis=None)))
    return math.floor(u_exact * 2**16 / u.size)


def _ref_u(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """The update in last-bit units, from the node's inputs."""
    a = node.attrs
    lr = float(args[-1])
    q, e = args[0], int(args[1])
    wd = float(a.get("weight_decay", 0.0))
    if node.op_type == "IntSGDUpdate":
        g = args[3].astype(np.float32)
        if wd:
            g = g + np.float32(wd * 2.0**e) * q.astype(np.float32)
        return g * np.float32(-lr * 2.0**-e)
    if node.op_type == "IntAccSGDUpdate":
        acc, ea = args[3].astype(np.int64), int(args[4])
    else:
        acc, ea = _ref_product(a, args)
    u = acc.astype(np.float64) * (-lr * float(a.get("alpha", 1.0)) * 2.0 ** (ea - e))
    if wd:
        u = u - lr * wd * q.astype(np.float64)
    return u.reshape(q.shape)


def _ref_product(a: dict, args: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """A fused update's weight-gradient product (int64, in the parameter's layout) and its exponent."""
    qa, ea, qb, eb = args[3:7]
    if a["product"] == "IntGemm":  # the weight-gradient GEMM in int64
        x = qa.T if a.get("product_transA") else qa
        y = qb.T if a.get("product_transB") else qb
        acc = x.astype(np.int64) @ y.astype(np.int64)
    else:  # convolution products have their own int64 reference tests (test_int_kernels)
        attrs = {k[len("product_"):]: v for k, v in a.items() if k.startswith("product_")}
        acc = INT_PRODUCTS[a["product"]](qa, qb, attrs, np.int64)
    if a.get("transpose"):
        acc = acc.transpose(a["transpose"])
    return acc, int(ea) + int(eb)


_UPDATES = ("IntSGDUpdate", "FusedIntUpdate", "IntAccSGDUpdate")


@pytest.mark.parametrize("model,opts", [
    ("mlp", {}),
    ("mlp", {"rounding": "nearest", "weight_decay": 1e-3, "bits": 12}),
    ("lenet", {"weight_decay": 5e-4}),
])
def test_int_updates_of_real_steps_match_the_definition(model: str, opts: dict) -> None:
    m = rctc.compile(build(model), batch_size=8, seed=0, adjust_every=2, **opts)
    _, shape, dtype = input_spec(model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, *shape)).astype(dtype)
    y = rng.integers(0, num_classes(model), 8)
    t = Trainer(m.graph, seed=1)
    from rctc.runtime.controller import attach_controller

    attach_controller(t)
    checked: list[str] = []

    def on_node(node: Node, args: list, result: Any, env: Any) -> None:
        if node.op_type in _UPDATES:
            u = _ref_u(node, args)
            key = (1, t.step, node.meta["node_id"])  # the trainer's seed, the step being run
            want, gavg, sat = _ref_update(args[0], u, int(args[2]), node.attrs.get("rounding", "stochastic"), key)
            assert result.dtype == args[0].dtype and _bits(result) == _bits(want), node.name
            param = node.meta["param"]
            np.testing.assert_allclose(ctx_stats["gavg"][param], gavg, rtol=1e-5)
            assert ctx_stats["saturation"][param] == sat
            assert ctx_stats[STATS_KEY][param] == (_ref_g(node, args, u), round(sat * u.size), u.size)
            checked.append(node.name)

    ctx_stats: dict[str, Any] = {}
    t.on_node = on_node
    mask = t.mask(7)  # a padded row
    assert mask.dtype == np.uint8  # the integer loss reads a 0/1 byte mask
    for lr in (0.05, 0.5, 4.0):  # up to updates large enough to saturate
        orig_run = t.executor.run

        def run(feeds, outputs, ctx=None, on_node=None, _orig=orig_run):  # noqa: ANN001, ANN202
            ctx_stats.clear()
            ctx.stats = ctx_stats
            return _orig(feeds, outputs, ctx, on_node)

        t.executor.run = run
        t.train_step(x, y, mask, lr)
        t.executor.run = orig_run
    n_updates = sum(n.op_type in _UPDATES for n in m.graph.nodes)
    assert n_updates == len(m.graph.params())  # every parameter's update is checked
    assert len(checked) == 3 * n_updates


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("udtype", [np.float32, np.float64])
def test_int_sgd_update_extremes(rounding: str, udtype: Any) -> None:
    """Huge, tiny, exactly-integer and half-way updates; values at and beyond the clip limits."""
    q = np.array([0, 5, -5, 7, -7, 3, 0, 1, 2, -3, 6], np.int8)
    g = np.array([1e30, -1e30, 3.0, 0.5, -0.5, 2.5, -2.5, 1e-9, 0.0, -7.25, 123.4], udtype)
    node = _node("IntSGDUpdate", {"weight_decay": 0.0, "rounding": rounding}, [(q.shape, q.dtype)], param="p",
                 node_id=11)
    for seed in range(3):
        ctx = KernelContext(training=True, seed=seed, step=2)
        got = KERNELS["IntSGDUpdate"](ctx, node, q, np.array(0, np.int32), np.array(4, np.int32), g,
                                      np.array(1.0, np.float32))
        u = g.astype(np.float32) * np.float32(-1.0)
        want, gavg, sat = _ref_update(q, u, 4, rounding, (seed, 2, 11))
        assert _bits(got) == _bits(want)
        assert ctx.stats["saturation"]["p"] == sat and sat > 0
        np.testing.assert_allclose(ctx.stats["gavg"]["p"], gavg, rtol=1e-6)


# ----- losses -----------------------------------------------------------------------------------

def _ref_ce(z: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, np.ndarray]:
    z = z.astype(np.float64)
    keep = mask != 0
    zs = z[keep] - z[keep].max(axis=1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
    denom = max(mask.sum(), 1.0)
    w = mask[keep].astype(np.float64)
    loss = float(-(w * logp[np.arange(len(zs)), y[keep]]).sum() / denom)
    g = np.zeros_like(z)
    p = np.exp(logp)
    p[np.arange(len(zs)), y[keep]] -= 1
    g[keep] = p * (w / denom)[:, None]
    return loss, g


def _ce(z: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ctx = KernelContext(training=True)
    loss = KERNELS["SoftmaxCrossEntropy"](ctx, _node("SoftmaxCrossEntropy", {}, [((), z.dtype)]), z, y, mask)
    g = KERNELS["SoftmaxCrossEntropyGrad"](ctx, _node("SoftmaxCrossEntropyGrad", {}, [(z.shape, z.dtype)]),
                                           np.array(1.0, z.dtype), z, y, mask)
    return loss, g


@pytest.mark.parametrize("padded", [False, True])
def test_cross_entropy_against_float64(padded: bool) -> None:
    rng = np.random.default_rng(4)
    z = (rng.standard_normal((32, 10)) * 4).astype(np.float32)
    y = rng.integers(0, 10, 32)
    mask = np.ones(32, np.float32)
    if padded:
        mask[-5:] = 0
        z[-5:] = np.nan
        y[-5:] = -3  # ignored in padded rows
    loss, g = _ce(z, y, mask)
    want_loss, want_g = _ref_ce(z, y, mask)
    assert loss.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)
    np.testing.assert_allclose(g, want_g, rtol=1e-4, atol=1e-7)
    assert np.isfinite(g).all()


def test_cross_entropy_label_checks() -> None:
    z = np.zeros((3, 4), np.float32)
    mask = np.ones(3, np.float32)
    for bad in (-1, 4, 2**40):
        with pytest.raises(ValueError, match=f"label {bad} outside the 4 classes"):
            _ce(z, np.array([0, bad, 1]), mask)
    mask[1] = 0  # a bad label in a padded row is ignored
    loss, _ = _ce(z, np.array([0, -1, 1]), mask)
    np.testing.assert_allclose(float(loss), np.log(4.0), rtol=1e-6)


@pytest.mark.parametrize("padded", [False, True])
def test_mse_against_float64(padded: bool) -> None:
    rng = np.random.default_rng(6)
    pred = rng.standard_normal((6, 3, 2)).astype(np.float32)
    tgt = rng.standard_normal((6, 3, 2)).astype(np.float32)
    mask = np.ones(6, np.float32)
    if padded:
        mask[4:] = 0
        pred[4:] = 1e10  # garbage in the padded rows
    ctx = KernelContext()
    loss = KERNELS["MSELoss"](ctx, _node("MSELoss", {}, [((), np.float32)]), pred, tgt, mask)
    g = KERNELS["MSELossGrad"](ctx, _node("MSELossGrad", {}, [(pred.shape, np.float32)]), np.array(1.0, np.float32),
                               pred, tgt, mask)
    keep = mask != 0
    d = (pred[keep] - tgt[keep]).astype(np.float64)
    denom = max(mask.sum(), 1.0)
    np.testing.assert_allclose(float(loss), (d**2).reshape(len(d), -1).mean(axis=1).sum() / denom, rtol=1e-6)
    want = np.zeros(pred.shape)
    want[keep] = 2 * d / (6 * denom)
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-8)


# ----- executor -----------------------------------------------------------------------------------

def _train(observed: bool) -> tuple[list, dict[str, bytes]]:
    m = rctc.compile(build("mlp"), batch_size=16, seed=2, adjust_every=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 64)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    recs: list = []
    t = m.trainer(seed=4)
    if observed:
        t.executor.op_times = {}
        t.on_node = lambda node, args, result, env: None
    from rctc.runtime.controller import attach_controller
    from rctc.runtime.trainer import LRSchedule, run_training

    attach_controller(t)
    run_training(t, x, y, None, 9, LRSchedule(0.3), keep_last=True,
                 on_step=lambda r: recs.append((r.step, r.loss, r.accuracy, repr(r.stats))))
    if observed:
        # the default rct graph is integer from end to end: the loss is the integer cross-entropy
        assert t.executor.op_times and {"FusedIntUpdate", "IntSoftmaxCrossEntropy"} <= set(t.executor.op_times)
    return recs, {k: _bits(v.data) for k, v in m.graph.values.items() if v.data is not None}


def test_plain_and_observed_loops_train_bit_identically() -> None:
    assert _train(False) == _train(True)


def _failing_graph() -> Graph:
    g = Graph("g")
    a = g.add_const("a", np.ones((2, 3), np.float32))
    b = g.add_const("b", np.array([3, 0], np.int64))  # 3 is out of range for axis 1
    g.add_node("Gather", [a, b], [("out", (2, 2), np.float32)], {"axis": 1}, name="pick")
    return g


@pytest.mark.parametrize("observed", [False, True])
def test_kernel_errors_name_the_node(observed: bool) -> None:
    ex = Executor(_failing_graph())
    seen: list[str] = []
    with pytest.raises(KernelError, match=r"node 'pick' \(Gather\) failed on inputs \(float32\[2, 3\], int64\[2\]\)"):
        ex.run({}, ["out"], KernelContext(), (lambda n, a, r, e: seen.append(n.name)) if observed else None)


# ----- small-array paths --------------------------------------------------------------------------

SPECIAL = np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, 1e-45, -1e-45, 3.0, -2.0], np.float32)


@pytest.mark.parametrize("size", [9, 5000])
def test_relu_and_masked_grad_bit_exact(size: int) -> None:
    rng = np.random.default_rng(7)
    x = np.resize(SPECIAL, size) * rng.choice([1, -1], size).astype(np.float32)
    x = x.reshape(-1, 3 if size == 9 else 50)
    y = KERNELS["Relu"](KernelContext(), _node("Relu", {}, [(x.shape, x.dtype)]), x)
    want = np.where(np.isnan(x), x, np.where(x > 0, x, np.float32(0)))  # +0 for every zero
    assert _bits(y) == _bits(want) and y is not x
    dy = np.resize(SPECIAL[::-1], x.size).reshape(x.shape)
    g = KERNELS["ReluGrad"](KernelContext(), _node("ReluGrad", {}, [(x.shape, x.dtype)]), dy, x)
    assert _bits(g) == _bits(np.where(x > 0, dy, np.float32(0)))


def test_reduce_sum_to_node_reused_with_other_shapes() -> None:
    node = _node("ReduceSumTo", {"shape": [1, 4]}, [((1, 4), np.float32)])
    rng = np.random.default_rng(8)
    for shape in [(3, 4), (2, 5, 4), (1, 4), (7, 1, 4)]:
        x = rng.standard_normal(shape).astype(np.float32)
        got = KERNELS["ReduceSumTo"](KernelContext(), node, x)
        want = x.reshape(-1, 4).astype(np.float64).sum(axis=0, keepdims=True)
        assert got.shape == (1, 4)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    with pytest.raises(ValueError, match="not broadcast-compatible"):
        KERNELS["ReduceSumTo"](KernelContext(), node, np.ones((2, 3), np.float32))


def test_reshape_transpose_gather_nodes_reused() -> None:
    node = _node("Reshape", {}, [((), np.float32)])
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for shape, want in [([0, -1], (2, 12)), ([4, 0, 2], (4, 3, 2)), ([-1], (24,)), ([0, -1], (2, 12))]:
        got = KERNELS["Reshape"](KernelContext(), node, x, np.array(shape, np.int64))
        assert got.shape == want and np.array_equal(got.reshape(-1), x.reshape(-1))
    x2 = x.reshape(4, 6)
    assert KERNELS["Reshape"](KernelContext(), node, x2, np.array([0, -1], np.int64)).shape == (4, 6)
    tnode = _node("Transpose", {"perm": [2, 0, 1]}, [((), np.float32)])
    assert np.array_equal(KERNELS["Transpose"](KernelContext(), tnode, x), np.transpose(x, (2, 0, 1)))
    rev = _node("Transpose", {}, [((), np.float32)])
    assert np.array_equal(KERNELS["Transpose"](KernelContext(), rev, x), x.T)
    gnode = _node("Gather", {"axis": 1}, [((), np.float32)])
    for idx in (np.array([[0, 2], [1, 1]]), np.array([-1, 0, -3])):
        assert np.array_equal(KERNELS["Gather"](KernelContext(), gnode, x, idx), np.take(x, idx % 3, axis=1))
    with pytest.raises(IndexError, match=r"out of range \[-3, 2\]"):
        KERNELS["Gather"](KernelContext(), gnode, x, np.array([0, -4]))


@pytest.mark.parametrize("a_shape,b_shape", [((4, 6, 50), (50, 7)), ((2, 3, 6, 40), (40, 5))])
@pytest.mark.parametrize("bits", [(8, 8), (8, 16), (16, 16)])
def test_int_matmul_batched_left_operand(a_shape: tuple, b_shape: tuple, bits: tuple[int, int]) -> None:
    """(..., M, K) @ (K, N) runs as one GEMM over all rows: contiguous and transposed views."""
    from rctc.runtime.intmath import int_matmul

    rng = np.random.default_rng(9)
    dt = {8: np.int8, 16: np.int16}
    a = rng.integers(-(2 ** (bits[0] - 1)) + 1, 2 ** (bits[0] - 1), a_shape).astype(dt[bits[0]])
    b = rng.integers(-(2 ** (bits[1] - 1)) + 1, 2 ** (bits[1] - 1), b_shape).astype(dt[bits[1]])
    for aa in (a, np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)):
        want = np.matmul(aa.astype(np.int64), b.astype(np.int64))
        got = int_matmul(aa, b)
        assert got.dtype == np.int64 and got.shape == want.shape and np.array_equal(got, want)


def test_blas_matmul_mid_size_restores_the_thread_count() -> None:
    from threadpoolctl import threadpool_info

    from rctc.runtime.blas import OPENBLAS_ONE_THREAD_MACS, SMALL_GEMM_MACS
    from rctc.runtime.intmath import blas_matmul

    rng = np.random.default_rng(10)
    a = rng.integers(-9, 10, (128, 64)).astype(np.float32)
    b = rng.integers(-9, 10, (64, 64)).astype(np.float32)
    assert OPENBLAS_ONE_THREAD_MACS < a.size * 64 < SMALL_GEMM_MACS  # the range that toggles
    before = [i["num_threads"] for i in threadpool_info()]
    assert np.array_equal(blas_matmul(a, b), a @ b)
    assert [i["num_threads"] for i in threadpool_info()] == before

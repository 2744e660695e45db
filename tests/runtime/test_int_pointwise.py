"""The numpy kernels of rctc/ops/integer_pointwise.py against plain Python-int references
(tests/runtime/intref/_plain.py and the per-element restatements of test_intref_expo), on a
parametrised grid of cases, exponents and widths; the random words of stochastic roundings are
the node's own stream (KernelContext.words)."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.ir import Node, Value
from rctc.runtime.kernels import KERNELS, KernelContext
from tests.runtime.intref._plain import deq, requant, requant_array, tensor, to_fixed
from tests.runtime.intref.test_intref_expo import ONE, p_sigmoid, p_tanh

CASES = ("random", "zeros", "saturated", "single", "negative")
GRID = [(c, e) for c in CASES for e in (-7, -4, -1, 1)]
CTX = KernelContext(training=True, seed=11, step=3)


def _node(op: str, **attrs: object) -> Node:
    n = Node(op, f"{op}.t", [], [Value("y", None, np.int8)], dict(attrs), domain="rctc")
    n.meta["node_id"] = 7
    return n


def _run(op: str, *args: object, **attrs: object) -> tuple:
    node = _node(op, **attrs)
    return node, KERNELS[op](CTX, node, *args)


def _q(case: str, e: int, shape: tuple[int, ...] = (4, 6), bits: int = 8) -> np.ndarray:
    x = tensor(case, shape, bits, abs(e) + 3)
    return np.broadcast_to(x, shape).astype(np.int8 if bits <= 8 else np.int16).copy()


def _e(v: int) -> np.ndarray:
    return np.array(v, np.int32)


def _map(fn, q: np.ndarray, e: int) -> np.ndarray:
    return np.array([fn(to_fixed(int(v), e)) for v in q.ravel()], np.int64).reshape(q.shape)


@pytest.mark.parametrize("case,e", GRID)
@pytest.mark.parametrize("bits", [4, 8])
def test_sigmoid_tanh_and_grads(case: str, e: int, bits: int) -> None:
    q = _q(case, e)
    x = q * 2.0**e
    d = tensor("random", q.shape, 8, 2).astype(np.int8)
    for op, plain, real, bound in [("IntSigmoid", p_sigmoid, 1 / (1 + np.exp(-x)), 1e-3),
                                   ("IntTanh", p_tanh, np.tanh(x), 2e-3)]:
        _, y = _run(op, q, _e(e), bits=bits)
        s = _map(plain, q, e)
        ref = requant_array(s, -16, bits)
        assert int(y[1]) == ref[1] and np.array_equal(y[0], ref[0]) and y[0].dtype == np.int8
        assert np.abs(deq(y) - real).max() <= 2.0 ** (int(y[1]) - 1) + bound  # intref.expo's stated bound
        node, dx = _run(f"{op}Grad", d, _e(-6), q, _e(e), bits=8, rounding="stochastic")
        acc = d.astype(np.int64) * (s * (ONE - s) if op == "IntSigmoid" else ONE * ONE - s * s)
        ref = requant_array(acc, -6 - 32, 8, CTX.words(node, q.shape))
        assert int(dx[1]) == ref[1] and np.array_equal(dx[0], ref[0])
        _, dn = _run(f"{op}Grad", d, _e(-6), q, _e(e), bits=8, rounding="nearest")
        ref = requant_array(acc, -6 - 32, 8)
        assert int(dn[1]) == ref[1] and np.array_equal(dn[0], ref[0])


def _aligned(vals: list[tuple[np.ndarray, int]]) -> tuple[list[np.ndarray], int]:
    """Every operand at the finest exponent by exact multiplication (Python ints: never rounds
    for these 8-bit operands, where intref.core.align is exact)."""
    e = min(v for _, v in vals)
    return [np.array([int(a) * 2 ** (ea - e) for a in q.ravel()], dtype=object).reshape(q.shape)
            for q, ea in vals], e


@pytest.mark.parametrize("case,e", GRID)
@pytest.mark.parametrize("shift", [-5, 0, 3])
def test_sub_and_neg(case: str, e: int, shift: int) -> None:
    qa = _q(case, e)
    qb = tensor("random", (1, 6), 8, 9).astype(np.int8)  # broadcast along the rows
    (a, b), ec = _aligned([(qa, e), (qb, e + shift)])
    vals = [int(v) for v in np.broadcast_to(a - b, qa.shape).ravel()]
    for rounding in ("nearest", "stochastic"):
        node, y = _run("IntSub", qa, _e(e), qb, _e(e + shift), bits=8, rounding=rounding)
        words = None if rounding == "nearest" else [int(w) for w in CTX.words(node, qa.shape).ravel()]
        out, eo = requant(vals, ec, 8, words)
        assert int(y[1]) == eo and y[0].ravel().tolist() == out
    _, n = _run("IntNeg", qa, _e(e))
    assert int(n[1]) == e and n[0].dtype == qa.dtype and np.array_equal(n[0].astype(np.int64), -qa.astype(np.int64))


@pytest.mark.parametrize("exps", [(-3, -3, -3), (-3, -5, 0), (2, -7, -1)])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_its_grad(exps: tuple[int, int, int], axis: int) -> None:
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    qs = [tensor("random", s, 8, 20 + i).astype(np.int8) for i, s in enumerate(shapes)]
    args: list[np.ndarray] = []
    for q, e in zip(qs, exps):
        args += [q, _e(e)]
    _, y = _run("IntConcat", *args, axis=axis, bits=8)
    ints, ec = _aligned(list(zip(qs, exps)))
    whole = np.concatenate(ints, axis=axis)
    out, eo = requant([int(v) for v in whole.ravel()], ec, 8)
    assert int(y[1]) == eo and y[0].ravel().tolist() == out
    if len(set(exps)) == 1:  # one exponent: the concatenation is exact
        assert int(y[1]) == exps[0] and np.array_equal(y[0], np.concatenate(qs, axis=axis))
    dq = tensor("random", y[0].shape, 8, 5).astype(np.int8)
    ax = axis % 3
    split = [4, 2, 3] if ax == 2 else [3, 1, 2] if ax == 1 else [1, 1, 4]
    dq = tensor("random", tuple(sum(split) if i == ax else d for i, d in enumerate((2, 3, 4))), 8, 5).astype(np.int8)
    _, pieces = _run("IntConcatGrad", dq, _e(-9), axis=axis, split=split, select=[2, 0])
    offs = np.cumsum([0, *split])
    for k, i in enumerate((2, 0)):
        want = np.take(dq, range(offs[i], offs[i + 1]), axis=ax)
        assert np.array_equal(pieces[2 * k], want) and int(pieces[2 * k + 1]) == -9


def _plain_scatter(dq: np.ndarray, idx: list[int], shape: tuple[int, ...], axis: int) -> list[int]:
    """Python-int scatter-add, element by element."""
    out = np.zeros(shape, dtype=object)
    n = shape[axis]
    for pos in np.ndindex(*dq.shape):
        k = idx[pos[axis]] if dq.ndim == len(shape) else None
        if k is None:
            raise AssertionError("the test keeps one index axis")
        k = k + n if k < 0 else k
        tgt = list(pos)
        tgt[axis] = k
        out[tuple(tgt)] += int(dq[pos])
    return [int(v) for v in out.ravel()]


@pytest.mark.parametrize("idx,axis", [([0, 2, 5], 1), ([4, 4, -2, 1], 1), ([1, 0], 0), ([2, -1, 2], 2)])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_gather_scatter(idx: list[int], axis: int, rounding: str) -> None:
    shape = (3, 6, 4)
    gshape = tuple(len(idx) if i == axis else d for i, d in enumerate(shape))
    dq = tensor("saturated", gshape, 8, 1).astype(np.int8)
    node, y = _run("IntGatherScatter", dq, _e(-5), np.array(idx, np.int64), table_shape=list(shape), axis=axis,
                   bits=8, rounding=rounding)
    words = None if rounding == "nearest" else [int(w) for w in CTX.words(node, shape).ravel()]
    out, eo = requant(_plain_scatter(dq, idx, shape, axis), -5, 8, words)
    assert int(y[1]) == eo and y[0].ravel().tolist() == out and y[0].shape == shape
    n = shape[axis]
    if len({k % n for k in idx}) == len(idx):  # distinct rows: exact, the error's exponent
        assert int(y[1]) == -5
    else:  # saturated rows added: the sum needs a coarser exponent
        assert int(y[1]) > -5


def test_gather_scatter_refuses_an_index_out_of_range() -> None:
    with pytest.raises(IndexError, match="out of range"):
        _run("IntGatherScatter", np.ones((2, 1), np.int8), _e(0), np.array([3]), table_shape=[2, 3], axis=1, bits=8)


def _plain_pad_index(mode: str, j: int, n: int) -> int:
    """Input position of padded position ``j`` (-1: the constant), by the ONNX definition."""
    if 0 <= j < n:
        return j
    if mode == "constant":
        return -1
    if mode == "edge":
        return min(max(j, 0), n - 1)
    return -j if j < 0 else 2 * (n - 1) - j  # reflect (pads shorter than the axis)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_pad_grad(mode: str, rounding: str) -> None:
    shape, begin, end = (2, 1, 4, 5), [0, 0, 1, 2], [0, 0, 2, 1]
    dshape = tuple(s + b + e for s, b, e in zip(shape, begin, end))
    dq = tensor("saturated", dshape, 8, 4).astype(np.int8)
    node, y = _run("IntPadGrad", dq, _e(-3), mode=mode, begin=begin, end=end, bits=8, rounding=rounding)
    acc = np.zeros(shape, dtype=object)
    for pos in np.ndindex(*dshape):
        src = [_plain_pad_index(mode, p - b, s) for p, b, s in zip(pos, begin, shape)]
        if min(src) >= 0:
            acc[tuple(src)] += int(dq[pos])
    words = None if rounding == "nearest" else [int(w) for w in CTX.words(node, shape).ravel()]
    out, eo = requant([int(v) for v in acc.ravel()], -3, 8, words)
    assert int(y[1]) == eo and y[0].ravel().tolist() == out
    if mode == "constant":  # no position read twice: exact, the error's exponent
        assert int(y[1]) == -3


@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric"])
def test_nearest_resize_grad(coord: str) -> None:
    """x2 nearest upsampling: input (i, j) was read by outputs (2i..2i+1, 2j..2j+1)."""
    dq = tensor("random", (1, 2, 6, 8), 8, 6).astype(np.int8)
    node, y = _run("IntResizeGrad", dq, _e(-4), mode="nearest", coordinate_transformation_mode=coord,
                   nearest_mode="round_prefer_floor", scales=[1.0, 1.0, 2.0, 2.0], input_shape=[1, 2, 3, 4], bits=8,
                   rounding="stochastic")
    acc = [int(dq[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].astype(np.int64).sum())
           for c in range(2) for i in range(3) for j in range(4)]
    out, eo = requant(acc, -4, 8, [int(w) for w in CTX.words(node, (1, 2, 3, 4)).ravel()])
    assert int(y[1]) == eo and y[0].ravel().tolist() == out
    with pytest.raises(ValueError, match="nearest"):
        _run("IntResizeGrad", dq, _e(-4), mode="linear", scales=[1.0, 1.0, 2.0, 2.0], input_shape=[1, 2, 3, 4],
             bits=8, rounding="nearest")

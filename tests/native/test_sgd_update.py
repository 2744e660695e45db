"""The C fused integer SGD update (csrc/kernels/sgd_update.c) equals the numpy FusedIntUpdate kernel.

The MLP's real FusedIntUpdate nodes run in numpy (runtime/kernels/int_update.py) and in C on the
same parameter, the same exact weight-gradient product (int64 numpy matmul) and the same Philox
words, over learning rates, exponent shifts (integer updates, shifts below and above 24 bits)
and both roundings; the new parameters must be equal bit for bit, and the controller statistics
the C kernel returns (A = sum |acc|, the saturated count S; the C Gavg from A) must equal what
the numpy kernel recorded (rctc/bitwidth_rule.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import rctc
from rctc.bitwidth_rule import STATS_KEY, abs_sum
from rctc.native.codegen.runner import exact_pair
from rctc.native.kernels import Kernels
from rctc.runtime.kernels import KernelContext
from rctc.runtime.kernels.int_update import fused_int_update


@pytest.fixture(scope="module")
def graph():
    return rctc.compile("models/mlp.onnx", mode="rct", elementwise="integer", batch_size=8).graph


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_fused_sgd_update_bit_identical(graph, kernels: Kernels, rounding: str) -> None:
    rng = np.random.default_rng(3)
    nodes = [n for n in graph.nodes if n.op_type == "FusedIntUpdate"]
    assert nodes
    checked = moved = saturated = 0
    shifts: set[int] = set()
    for node in nodes:
        saved = node.attrs.get("rounding")
        node.attrs["rounding"] = rounding
        try:
            qv = node.inputs[0]
            ga, xa = node.inputs[3], node.inputs[5]
            for trial, lr in enumerate((0.05, 0.3, 1e-3, 2.0)):
                q = rng.integers(-100, 101, qv.shape).astype(qv.dtype)
                qa = rng.integers(-128, 128, ga.shape).astype(np.int8)
                qb = rng.integers(-128, 128, xa.shape).astype(np.int8)
                ea, eb = -7 - 3 * trial, -5 + trial
                e = ea + eb + (5, -10, 0, -3)[trial]  # shifts past 24 bits, within 24 bits, integer
                bits = 8 + 2 * trial
                ctx = KernelContext(training=True, seed=11, step=trial)
                want = fused_int_update(ctx, node, q, np.int32(e), np.int32(bits), qa, np.int32(ea), qb,
                                        np.int32(eb), np.float32(lr))
                acc = qa.astype(np.int64) @ qb.astype(np.int64)  # the product in the parameter's layout
                scale = -float(np.float32(lr)) * float(node.attrs.get("alpha", 1.0)) * 2.0 ** (ea + eb - e)
                m, k = exact_pair(scale)
                rand = ctx.words(node, q.shape).ravel() if rounding == "stochastic" else None
                rc, got, (a, sat) = kernels.sgd_update_fused(q, acc.reshape(q.shape), m, k, bits, rand)
                assert rc == 0
                assert got.dtype == want.dtype and np.array_equal(got, want), (node.name, lr, k)
                st = ctx.stats[STATS_KEY][node.meta["param"]]
                assert (sat, q.size) == (st.s, st.n) and a == abs_sum(acc) > 0
                assert kernels.bw_gavg(a, m, k, q.size) == st.g, (node.name, lr, k)
                saturated += sat > 0
                moved += not np.array_equal(got, q)
                shifts.add(-1 if k < -24 else 0 if k < 0 else 1)  # shift > 24 bits, <= 24, none
                checked += 1
        finally:
            node.attrs["rounding"] = saved
    assert checked == 4 * len(nodes)
    assert moved >= checked // 2  # the comparisons are of real updates, not of untouched parameters
    assert shifts == {-1, 0, 1}, shifts  # shifts past 24 bits, within 24 bits, and integer updates
    assert 0 < saturated < checked  # the saturated counts compared include non-zero ones


def test_fused_sgd_update_statistic_bound(kernels: Kernels) -> None:
    """A = sum |acc| must fit uint64 (m = 0 admits any acc): the kernel refuses past it, and takes
    the largest A that fits (|INT64_MIN| = 2^63 included)."""
    q = np.zeros(3, np.int8)
    big = np.array([-(1 << 63), (1 << 62), (1 << 62) - 1], np.int64)
    rc, _, (a, s) = kernels.sgd_update_fused(q, big, 0, 0, 8)
    assert rc == 0 and a == abs_sum(big) == (1 << 64) - 1 and s == 0
    rc, _, _ = kernels.sgd_update_fused(q, big + np.array([0, 0, 1], np.int64), 0, 0, 8)
    assert rc != 0


def numpy_update(q: np.ndarray, acc: np.ndarray, m: int, k: int, bits: int, rand: np.ndarray | None) -> np.ndarray:
    """The numpy kernels' arithmetic (int_update._apply): u = float64(acc) * (m 2^k), then
    stochastic_floor (or np.rint), the sum in float64, the clip."""
    from rctc.runtime.kernels.quant_ops import stochastic_floor

    u = acc.astype(np.float64) * (m * 2.0**k)
    qmax = float((1 << (bits - 1)) - 1)
    if rand is None:
        new = np.add(q, np.rint(u), dtype=np.float64)
    else:
        fl, up = stochastic_floor(u, rand)
        new = np.add(q, fl, dtype=np.float64)
        new += up
    return np.clip(new, -qmax, qmax).astype(q.dtype)


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("k", [-54, -55, -58, -63, -64, -70, -80, -200, -1074])
def test_fused_sgd_update_shifts_past_53_bits_follow_float64(kernels: Kernels, rounding: str, k: int) -> None:
    """|u| < 1/2 (BatchNorm's gamma / beta updates reach such scales): numpy's float64 rounds
    frac(u) = 1 - |u| of a negative u to the 2^-53 grid; the C kernel gives the same bits,
    ties included (|p| = a 2^d + 2^(d-1) for d = -k - 53), for products up to 2^53."""
    rng = np.random.default_rng(-k)
    n = 4096
    m = (1 << 23) + 2 * int(rng.integers(0, 1 << 22)) + 1  # an odd float32 mantissa
    d = -k - 53
    mag = rng.integers(1, (1 << 53) // m, n)  # |acc| m < 2^53
    if d < 30:  # ties of the rounding to 2^-53 and their neighbours: |acc| m = a 2^d + 2^(d-1) (+-1)
        tie = ((1 << (d - 1)) * pow(m, -1, 1 << d)) % (1 << d)
        top = (1 << 53) // m >> d
        for j in range(0, 300, 3):
            base = tie + (int(rng.integers(0, top)) << d)
            mag[j:j + 3] = [max(1, base - 1), base, base + 1]
        assert any((int(v) * m) % (1 << d) == 1 << (d - 1) for v in mag[:300])
    acc = np.where(rng.random(n) < 0.5, -mag, mag).astype(np.int64)
    q = rng.integers(-100, 101, n).astype(np.int16)
    rand = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32) if rounding == "stochastic" else None
    rc, got, (a, _) = kernels.sgd_update_fused(q, acc, m, k, 12, rand)
    assert rc == 0 and a == int(np.abs(acc).sum())
    want = numpy_update(q, acc, m, k, 12, rand)
    assert np.array_equal(got, want), np.argwhere(got != want)[:5]
    if rounding == "stochastic" and d < 8:
        assert 0 < np.count_nonzero(got != q) < n  # both outcomes occur: the comparison can fail
    rc, _, _ = kernels.sgd_update_fused(q, acc, m, -1075, 12, rand)
    assert rc != 0  # a subnormal u would round in numpy: refused


def test_fused_sgd_update_tiny_shift_tie_decides_against_the_word(kernels: Kernels) -> None:
    """The one place float64's half-to-even rounding of frac(u) changes the outcome: a tie between
    R - 1 = c 2^29 and R (odd), and the word's U = c: numpy rounds frac to the even R - 1, so
    U 2^29 < R - 1 is false (no round up); rounding the tie the other way would round up."""
    rows = []
    for c in ((1 << 23) + 5, (1 << 23) + 1000, (1 << 24) - 3):  # |p| < 2^53 needs R > 2^52
        x = (c << 29) + 1  # R: odd, R - 1 a multiple of 2^29
        a = (1 << 53) - x
        rows += [(-(2 * a + 1), c + dc) for dc in (-1, 0, 1)]  # |p| = a 2^1 + 2^0: a tie at d = 1
    acc = np.array([r[0] for r in rows], np.int64)
    rand = np.array([r[1] << 8 for r in rows], np.uint32)
    q = np.zeros(len(rows), np.int16)
    rc, got, _ = kernels.sgd_update_fused(q, acc, 1, -54, 12, rand)
    assert rc == 0
    want = numpy_update(q, acc, 1, -54, 12, rand)
    assert np.array_equal(got, want)
    assert want.tolist() == [0, -1, -1] * 3  # U = c - 1 rounds up, U = c (the tie) and c + 1 do not


def _round53(x: int) -> int:
    """|x| rounded to 53 significant bits, half to even (Python ints: an independent reference)."""
    a = abs(x)
    d = a.bit_length() - 53
    if d <= 0:
        return x
    r, rem = a >> d, a & ((1 << d) - 1)
    if rem > 1 << (d - 1) or (rem == 1 << (d - 1) and r & 1):
        r += 1
    return (r << d) * (1 if x >= 0 else -1)


def _pairwise(kernels: Kernels, q: np.ndarray, acc: np.ndarray, m: int, k: int, bits: int,
              rand: np.ndarray | None) -> np.ndarray:
    """The C update two elements a call (A = sum |acc| of |acc| up to 2^63 stays below 2^64)."""
    got = np.empty_like(q)
    for i in range(0, q.size, 2):
        rc, got[i:i + 2], (a, _) = kernels.sgd_update_fused(q[i:i + 2], acc[i:i + 2], m, k, bits,
                                                           None if rand is None else rand[i:i + 2])
        assert rc == 0 and a == sum(abs(int(v)) for v in acc[i:i + 2])
    return got


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("k", [-80, -60, -45, -30, -12, 0, 3])
def test_fused_sgd_update_products_past_53_bits_round_as_float64(kernels: Kernels, rounding: str, k: int) -> None:
    """|acc m| >= 2^53 (a conv's weight-gradient sum at a float32 learning rate): numpy rounds
    float64(acc) and then the product, each half to even; the C kernel gives the same bits,
    ties of both roundings included, for |acc| up to 2^63 and any 53-bit m."""
    rng = np.random.default_rng(100 - k)
    n = 3000
    m = (1 << 23) + 2 * int(rng.integers(0, 1 << 22)) + 1
    mag = [int(v) for v in rng.integers(1 << 29, 1 << 62, n // 3)]
    mag += [int(v) << int(s) for v, s in zip(rng.integers(1 << 20, 1 << 40, n // 3), rng.integers(0, 22, n // 3))]
    ties = []
    for j in range(n - len(mag)):
        d = 1 + j % 9  # |acc| past 53 bits with a tie (and neighbours) in its float64 rounding
        base = (int(rng.integers(1 << 52, 1 << 53)) << d) + (1 << (d - 1))
        ties.append(base + (j % 3) - 1)
    mag += ties
    acc = np.array([v if rng.random() < 0.5 else -v for v in mag], np.int64)
    # the case under test: the products are inexact in float64
    assert sum(_round53(int(a)) * m != _round53(_round53(int(a)) * m) for a in acc) > n // 2
    q = rng.integers(-100, 101, n).astype(np.int16)
    rand = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32) if rounding == "stochastic" else None
    got = _pairwise(kernels, q, acc, m, k, 12, rand)
    want = numpy_update(q, acc, m, k, 12, rand)
    assert np.array_equal(got, want), np.argwhere(got != want)[:5]
    if k <= -60:  # real updates compared, not only clipped ones
        assert np.count_nonzero((got != q) & (np.abs(got) < 2047)) > n // 10


@pytest.mark.parametrize(("m", "d"), [(1, 1), (1, 2), (1, 5), (3, 1), (5, 1)])
def test_fused_sgd_update_float64_ties_decide_the_rounding(kernels: Kernels, m: int, d: int) -> None:
    """Ties of float64's roundings (m = 1: of float64(acc), d bits dropped; m = 3, 5: of the
    product), made visible: float64(acc) m = R 2^d with R on 53 bits, and at k = -24 - d the
    stochastic rounding compares the word's U with the 24 low bits of R (U < R mod 2^24), so
    words U = f and U = f - 1 around the correct f flip the outcome if R were off by one either
    way. Expected from Python ints and from numpy."""
    rng = np.random.default_rng(10 * m + d)
    acc, words, want = [], [], []
    while len(acc) < 400:
        if m == 1:  # |acc| = r 2^d + 2^(d-1): a tie in the conversion to float64
            a = (int(rng.integers(1 << 52, 1 << 53)) << d) + (1 << (d - 1))
        else:  # acc below 2^53 (exact), acc m odd and 54 bits: a tie in the product's rounding
            a = int(rng.integers((1 << 53) // m + 1, (1 << 54) // m))
            a += (a * m) % 2 == 0
        full = _round53(_round53(a) * m)
        if full.bit_length() != 53 + d or full % (1 << d) or (full >> d) % (1 << 24) == 0:
            continue
        r = full >> d
        f = r % (1 << 24)
        for u in (f, f - 1):
            acc.append(a)
            words.append(u << 8)
            want.append((r >> 24) + (u < f))
    acc_a = np.array(acc, np.int64)
    rand = np.array(words, np.uint32)
    q = np.zeros(len(acc), np.int32)
    got = _pairwise(kernels, q, acc_a, m, -24 - d, 32, rand)
    assert got.tolist() == want
    assert np.array_equal(got, numpy_update(q, acc_a, m, -24 - d, 32, rand))
    assert max(want) < (1 << 31) - 1  # none clipped: every comparison is of the rounding


def test_fused_sgd_update_refuses_a_scale_past_float64(kernels: Kernels) -> None:
    q = np.zeros(4, np.int16)
    rc, _, _ = kernels.sgd_update_fused(q, np.full(4, 1 << 40, np.int64), 1 << 53, -30, 8)
    assert rc != 0  # m * 2^k with |m| >= 2^53 is no float64 scale
    rc, _, _ = kernels.sgd_update_fused(q, np.full(4, 1 << 40, np.int64), (1 << 20) + 1, -30, 8)
    assert rc == 0  # |acc m| >= 2^53: rounded as float64 rounds it (no longer refused)

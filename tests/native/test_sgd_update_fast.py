"""The fused SGD update's fast paths (csrc/kernels/sgd_update_fast.c, x86/sgd_update_avx2.c) equal
the specification loop (rctc_sgd_update_fused_portable) and the numpy arithmetic bit for bit.

A grid over every shift of the fast range (1..53 bits), int8 / int16 / int32 storage and
bitwidths, odd sizes (the AVX2 tail), both signs of m and of the accumulators, products up to
the exact range's edge (max |acc| |m| = 2^53 - 1), saturating updates, ties of the nearest
rounding and words at both ends of [0, 2^32): each fast variant must run (not decline) there
and give the portable loop's new parameter and statistics (A, S); just past the range (a product
of 2^53, a shift of 0 or 54, |m| >= 2^31 for AVX2 / AVX-512) it must decline with RCTC_SGD_NOT_FAST and the
dispatched entry point still equals the portable loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from rctc.native.kernels import SGD_NOT_FAST, Kernels
from tests.native.test_sgd_update import numpy_update

P53 = 1 << 53


def fast_variants(kernels: Kernels) -> list[str]:
    return ["fast_portable", *(["fast_avx2"] if kernels.has_variant("avx2") else []),
            *(["fast_avx512"] if kernels.has_variant("avx512vnni") else [])]


def _case(rng: np.random.Generator, n: int, m: int, s: int, qw: int, bits: int, edge: bool):
    """q, acc with |acc m| < 2^53 (at the edge when asked), words incl. 0 and 2^32 - 1."""
    dtype = {1: np.int8, 2: np.int16, 4: np.int32}[qw]
    qmax = (1 << (bits - 1)) - 1
    top = (P53 - 1) // abs(m)  # the largest |acc| in range
    lim = min(top, (qmax + 2) << s)  # mostly updates of a few units, some saturating
    mag = rng.integers(0, lim + 1, n, dtype=np.int64)
    if n > 4 and edge:
        mag[: n // 4] = rng.integers(max(0, top - 1000), top + 1, n // 4)  # the exact range's edge
        mag[0] = top
    acc = np.where(rng.random(n) < 0.5, -mag, mag).astype(np.int64)
    q = rng.integers(-qmax, qmax + 1, n).astype(dtype)
    if n > 8:
        q[1:4] = [qmax, -qmax, qmax - 1]
    rand = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    if n > 8:
        rand[4:8] = [0, 0xFFFFFFFF, 0xFF, 0x100]
    return q, acc, rand


def _check(kernels: Kernels, q, acc, m, k, bits, rand, want_fast: bool) -> int:
    """Every variant equals the portable loop (fast ones decline iff not want_fast); the count of
    elements that moved."""
    rc, want, st = kernels.sgd_update_fused(q, acc, m, k, bits, rand, "fused_portable")
    assert rc == 0
    assert np.array_equal(want, numpy_update(q, acc, m, k, bits, rand))
    assert st[0] == int(np.abs(acc.astype(object)).sum()) if acc.size else st[0] == 0
    for variant in fast_variants(kernels):
        rc, got, gst = kernels.sgd_update_fused(q, acc, m, k, bits, rand, variant)
        if variant in ("fast_avx2", "fast_avx512") and abs(m) >= 1 << 31:
            assert rc == SGD_NOT_FAST
            continue
        assert rc == (0 if want_fast else SGD_NOT_FAST), (variant, m, k, bits)
        if rc == 0:
            assert np.array_equal(got, want), (variant, m, k, bits, np.argwhere(got != want)[:4])
            assert gst == st, (variant, gst, st)
    rc, got, gst = kernels.sgd_update_fused(q, acc, m, k, bits, rand)
    assert rc == 0 and np.array_equal(got, want) and gst == st
    return int(np.count_nonzero(got != q))


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize(("qw", "bits"), [(1, 8), (1, 2), (2, 16), (2, 11), (2, 6), (4, 32), (4, 20)])
def test_fast_paths_equal_the_portable_loop_on_every_shift(kernels: Kernels, rounding: str, qw: int,
                                                            bits: int) -> None:
    rng = np.random.default_rng(qw * 100 + bits)
    moved = saturated = 0
    for s in range(1, 54):
        for n, m in ((257, -((1 << 23) + 2 * int(rng.integers(0, 1 << 22)) + 1)), (13, 3), (8, -1),
                     (100, (1 << 30) + 1), (9, -(1 << 31) + 1), (31, (1 << 40) + 7)):
            q, acc, rand = _case(rng, n, m, s, qw, bits, edge=s % 3 == 0)
            r = rand if rounding == "stochastic" else None
            moved += _check(kernels, q, acc, m, -s, bits, r, want_fast=True)
            rc, out, _ = kernels.sgd_update_fused(q, acc, m, -s, bits, r)
            saturated += int(np.count_nonzero(np.abs(out.astype(np.int64)) == (1 << (bits - 1)) - 1))
    assert moved > 1000 and saturated > 100  # real updates, clipped ones among them


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 255, 256])
def test_fast_paths_odd_sizes(kernels: Kernels, n: int) -> None:
    rng = np.random.default_rng(n)
    for s in (1, 7, 24, 25, 40, 53):
        q, acc, rand = _case(rng, n, -8388617, s, 2, 12, edge=True)
        _check(kernels, q, acc, -8388617, -s, 12, rand, want_fast=True)
        _check(kernels, q, acc, -8388617, -s, 12, None, want_fast=True)


@pytest.mark.parametrize("s", [1, 2, 5, 24, 30, 53])
def test_fast_paths_nearest_ties_go_to_even(kernels: Kernels, s: int) -> None:
    """acc m = (2j + 1) 2^(s-1): u = j + 1/2 exactly, rounded to the even of j and j + 1."""
    half = min(300, 1 << (53 - s))  # |acc m| = |2j + 1| 2^(s-1) < 2^53
    j = np.arange(-half, half, dtype=np.int64)
    for m in (1, -1):
        acc = m * (2 * j + 1) << (s - 1)
        q = np.zeros(j.size, np.int16)
        _check(kernels, q, acc, m, -s, 16, None, want_fast=True)
        _, got, _ = kernels.sgd_update_fused(q, acc, m, -s, 16)
        assert np.array_equal(got, np.where(j % 2 == 0, j, j + 1))


def test_fast_paths_decline_outside_their_range(kernels: Kernels) -> None:
    rng = np.random.default_rng(7)
    m = -((1 << 23) + 5)
    top = (P53 - 1) // abs(m)
    q, acc, rand = _case(rng, 40, m, 30, 2, 12, edge=False)
    acc[5] = top + 1  # one product reaches 2^53: float64 rounds it, only the portable loop does
    _check(kernels, q, acc, m, -30, 12, rand, want_fast=False)
    acc[5] = -(top + 1)
    _check(kernels, q, acc, m, -30, 12, None, want_fast=False)
    q, acc, rand = _case(rng, 40, m, 20, 2, 12, edge=True)
    for k in (0, 3, -54, -60):  # integer updates and shifts past 53 bits
        _check(kernels, q, acc, m, k, 12, rand, want_fast=False)
    _check(kernels, q, acc, m, -20, 17, rand, want_fast=False)  # 17 bits do not fit int16 storage
    _check(kernels, q.astype(np.int32), acc, m, -20, 12, rand, want_fast=True)
    big = np.full(4, 1 << 62, np.int64)  # m = 0: every product is exact, but A = 2^64 overflows
    for variant in fast_variants(kernels):
        assert kernels.sgd_update_fused(np.zeros(4, np.int8), big, 0, -3, 8, None, variant)[0] == SGD_NOT_FAST
    assert kernels.sgd_update_fused(np.zeros(4, np.int8), big, 0, -3, 8)[0] != 0  # refused by the spec loop


def test_fast_path_takes_the_update_of_a_trained_mlp(kernels: Kernels) -> None:
    """The MLP's real update operands (a float32 learning rate's mantissa, the exact weight-gradient
    product) are in the fast range: the speed-up applies to the bundled models."""
    import rctc
    from rctc.native.codegen.runner import exact_pair
    from rctc.runtime.kernels import KernelContext
    from rctc.runtime.kernels.int_update import fused_int_update

    g = rctc.compile("models/mlp.onnx", mode="rct", batch_size=32).graph
    node = next(n for n in g.nodes if n.op_type == "FusedIntUpdate")
    rng = np.random.default_rng(0)
    qv, ga, xa = node.inputs[0], node.inputs[3], node.inputs[5]
    q = rng.integers(-100, 101, qv.shape).astype(qv.dtype)
    qa = rng.integers(-128, 128, ga.shape).astype(np.int8)
    qb = rng.integers(-128, 128, xa.shape).astype(np.int8)
    ctx = KernelContext(training=True, seed=1, step=0)
    want = fused_int_update(ctx, node, q, np.int32(-12), np.int32(12), qa, np.int32(-7), qb, np.int32(-5),
                            np.float32(0.01))
    acc = (qa.astype(np.int64) @ qb.astype(np.int64)).reshape(q.shape)
    lr_m, lr_k = exact_pair(float(np.float32(0.01)))
    m, k = -lr_m, lr_k - 7 - 5 + 12
    rand = ctx.words(node, q.shape).ravel()
    for variant in fast_variants(kernels):
        rc, got, _ = kernels.sgd_update_fused(q, acc, m, k, 12, rand, variant)
        assert rc == 0 and np.array_equal(got, want), variant

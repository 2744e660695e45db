"""The streamed BatchNorm kernels against intref.norm, bit for bit, on shapes whose spatial size
crosses RCTC_IQ_NORM_CHUNK (256) at odd offsets, and the backward in parts as a device step
calls it: the plan, then the accumulator of one range of elements at a time (ranges that split
channels and batch rows), rounded by rctc_iq_round_store at the shift of the plan's max, equals
intref's dx, and the plan's max equals the max of the whole accumulator."""

from __future__ import annotations

import re
from ctypes import c_int, c_uint64

import numpy as np
import pytest

from rctc.native.intops import NORM_CHUNK
from rctc.native.intops_base import INCLUDE, _p, _ratio, _ref
from rctc.runtime.intref import core, norm
from tests.native.intops_cases import check, edge_tensors, rand_words

SHAPES = [(2, 3, 17, 19), (1, 2, 600), (3, 1, 257), (1, 4, 16, 16)]


def _params(c: int, seed: int):
    rng = np.random.default_rng(seed)
    return ((rng.integers(-127, 128, c).astype(np.int8), -6), (rng.integers(-127, 128, c).astype(np.int8), -4),
            (rng.integers(-3000, 3000, c).astype(np.int16), -10), (rng.integers(0, 3000, c).astype(np.int16), -9))


def test_chunk_matches_header() -> None:
    text = (INCLUDE / "rctc_intops.h").read_text()
    assert int(re.search(r"#define RCTC_IQ_NORM_CHUNK (\d+)", text).group(1)) == NORM_CHUNK


@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_streamed(intops, shape) -> None:
    gam, bet, rm, rv = _params(shape[1], 3)
    dq = edge_tensors(shape, np.int8, 4)["random"]
    for q in edge_tensors(shape, np.int8, 5).values():
        for e in (-7, 0):
            check(intops.batchnorm_train, norm.batchnorm_train, q, e, gam, bet, rm, rv, 1e-5, 0.9, 8)
            check(intops.batchnorm_backward, norm.batchnorm_backward, q, e, gam, dq, -5, 1e-5, 8,
                  rand_words(shape, 6))
            check(intops.batchnorm_backward, norm.batchnorm_backward, q, e, gam, dq, -5, 1e-5, 16)
    q16 = edge_tensors(shape, np.int16, 7)["random"] // 64  # a wider input (N max|q| < 2^29)
    check(intops.batchnorm_train, norm.batchnorm_train, q16, -3, gam, bet, rm, rv, 1e-5, 0.9, 8)
    check(intops.batchnorm_backward, norm.batchnorm_backward, q16, -3, gam, dq, -5, 1e-5, 8)
    for gdt, lim in ((np.int16, 2**15 - 1), (np.int32, 2**30)):  # the max from the channel's ends / a pass
        g = (np.random.default_rng(8).integers(-lim, lim + 1, shape[1]).astype(gdt), -20)
        for q in edge_tensors(shape, np.int8, 9).values():
            check(intops.batchnorm_train, norm.batchnorm_train, q, -2, g, bet, rm, rv, 1e-5, 0.9, 8)


def _parts(intops, q, e, gam, dq, de, bits, words, step):
    """dx of the plan + ranged accumulator + rctc_iq_round_store, ``step`` elements a range."""
    lib = intops.lib
    b, c, s = q.shape[0], q.shape[1], int(np.prod(q.shape[2:]))
    t = q.size
    plan = np.zeros(9 * c, np.int64)
    dg, db = np.zeros(c, np.int64), np.zeros(c, np.int64)
    off, amax = c_int(), c_uint64()
    num, log2 = _ratio(1e-5)
    rc = lib.rctc_iq_batchnorm_backward_plan(b, c, s, _p(q), 1, e, _p(gam[0]), 1, _p(dq), 1, num, log2, _p(plan),
                                             _ref(off), _ref(amax), _p(dg), _p(db), None)
    assert rc == 0
    whole = np.zeros(t, np.int64)
    lib.rctc_iq_batchnorm_backward_acc(b, c, s, _p(q), 1, _p(dq), 1, _p(plan), 0, t, _p(whole))
    assert amax.value == core.absmax(whole)
    sh = core.requant_shift(amax.value, bits, words is not None)
    w = core.storage_dtype(bits)
    out = np.zeros(t, w)
    flat_words = None if words is None else np.ascontiguousarray(words.reshape(-1))
    for i0 in range(0, t, step):
        n = min(step, t - i0)
        acc = np.zeros(n, np.int64)
        lib.rctc_iq_batchnorm_backward_acc(b, c, s, _p(q), 1, _p(dq), 1, _p(plan), i0, n, _p(acc))
        assert np.array_equal(acc, whole[i0:i0 + n])
        r = None if flat_words is None else flat_words[i0:i0 + n]
        view = out[i0:i0 + n]
        lib.rctc_iq_round_store(n, _p(acc), sh, _p(r), _p(view), np.dtype(w).itemsize)
    return (out.reshape(q.shape), de + gam[1] - e + off.value + sh), (dg, de - 16), (db, de)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("step", [1, 97, 256, 1000])
def test_backward_in_parts(intops, shape, step) -> None:
    gam = _params(shape[1], 8)[0]
    q = edge_tensors(shape, np.int8, 9)["random"]
    dq = edge_tensors(shape, np.int8, 10)["random"]
    for bits, words in ((8, rand_words(shape, 11)), (8, None), (4, rand_words(shape, 12))):
        want = norm.batchnorm_backward(q, -4, gam, dq, -5, 1e-5, bits, words)
        got = _parts(intops, q, -4, gam, dq, -5, bits, words, step)
        for g, wnt in zip(got, want):
            assert np.array_equal(g[0], wnt[0]) and g[0].dtype == wnt[0].dtype and g[1] == wnt[1]

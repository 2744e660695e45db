"""The C kernel rctc_momentum_update (native/csrc/kernels/momentum_update.c) against the numpy
reference (runtime/intref/momentum.py), bit for bit: parameter, velocity, its exponent and the
statistics, with both roundings, on a grid of constants, widths and exponents (odd sizes included)."""

from __future__ import annotations

from ctypes import c_int, c_int64, c_size_t, c_uint32, c_uint64, c_void_p

import numpy as np
import pytest

from rctc.bitwidth_rule import abs_sum
from rctc.native.build import load_library
from rctc.rng import random_words
from rctc.runtime.intref.momentum import momentum_update
from rctc.runtime.kernels.int_adamw import lr_exact
from rctc.runtime.kernels.int_momentum import constants

DRAW = 1 << 40
RCTC_IQ_EDOMAIN = -2


@pytest.fixture(scope="module")
def kernel():
    fn = load_library().rctc_momentum_update
    fn.restype = c_int
    fn.argtypes = [c_size_t, c_void_p, c_int, c_int, c_int, c_void_p, c_int, c_void_p, c_int, c_void_p, c_int,
                   c_int64, c_int, c_void_p, c_uint64, c_uint32, c_uint32, c_int, c_void_p, c_void_p, c_void_p]
    return fn


def _p(a: np.ndarray) -> int:
    return a.ctypes.data


def _dtype(bits: int) -> type:
    return np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32


def _call(kernel, q, e, bits, gq, ge, vq, ve, vbits, lr_m, lr_k, c, seed, step, node, stochastic):
    q_out, v_out = np.empty_like(q), np.empty_like(vq)
    ve_c, stats = np.array([ve], np.int32), np.zeros(2, np.uint64)
    rc = kernel(q.size, _p(q), q.itemsize, e, bits, _p(gq), ge, _p(vq), vq.itemsize, _p(ve_c), vbits, lr_m, lr_k,
                _p(np.array(c.as_list(), np.int64)), seed, step, node, int(stochastic), _p(q_out), _p(v_out),
                _p(stats))
    return rc, q_out, v_out, int(ve_c[0]), stats


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize(("mu", "wd", "alpha"), [(0.9, 0.0, 1.0), (0.5, 5e-4, 1 / 32), (0.99, 0.1, 3.0),
                                                 (0.0, 0.0, 1.0), (1.0, 0.01, 1.0)])
def test_c_equals_numpy(kernel, mu: float, wd: float, alpha: float, stochastic: bool) -> None:
    rng = np.random.default_rng(int(mu * 1000) + int(wd * 1e4) + stochastic)
    c = constants(mu, wd, alpha)
    for trial in range(8):
        n = int(rng.choice([1, 7, 255, 257, 1000]))
        bits, vbits = int(rng.integers(2, 17)), int(rng.choice([4, 8, 16, 24, 32]))
        qm, vm = 2 ** (bits - 1) - 1, 2 ** (vbits - 1) - 1
        q = rng.integers(-qm, qm + 1, n).astype(_dtype(bits))
        e, ge = int(rng.integers(-20, -2)), int(rng.integers(-40, 0))
        gq = ((rng.integers(-2**40, 2**40, n) * (rng.random(n) < 0.9)) >> rng.integers(0, 30, n)).astype(np.int64)
        if trial % 3 == 0:
            vq, ve = np.zeros(n, _dtype(vbits)), 0
        else:
            vq, ve = rng.integers(-vm, vm + 1, n).astype(_dtype(vbits)), ge + int(rng.integers(-10, 30))
        lr_m, lr_k = lr_exact(float(10 ** rng.uniform(-4, 0)))
        seed, step, node = int(rng.integers(0, 2**63)), int(rng.integers(0, 2**31)), int(rng.integers(0, 2**31))
        words = tuple(random_words(seed, step, node, d * DRAW, n) for d in range(2)) if stochastic else None
        ref = momentum_update(q, e, bits, gq, ge, vq, ve, vbits, lr_m, lr_k, c, words)
        rc, q_out, v_out, ve_c, stats = _call(kernel, q, e, bits, gq, ge, vq, ve, vbits, lr_m, lr_k, c, seed, step,
                                              node, stochastic)
        if abs_sum(ref.u) >= 2**64:  # A past 64 bits: the kernel refuses (the executor then runs numpy's)
            assert rc == RCTC_IQ_EDOMAIN
            continue
        assert rc == 0
        assert np.array_equal(q_out, ref.q), trial
        assert np.array_equal(v_out, ref.vq) and ve_c == ref.ve, trial
        assert int(stats[0]) == abs_sum(ref.u) and int(stats[1]) == ref.saturated, trial


def test_zero_gradient_and_velocity_keep_the_exponent(kernel) -> None:
    c = constants(0.9, 0.0)
    q = np.array([5, -3], np.int8)
    rc, out, v, ve, st = _call(kernel, q, -4, 8, np.zeros(2, np.int64), -10, np.zeros(2, np.int16), -30, 16, 1, -10,
                               c, 0, 0, 0, True)
    assert rc == 0 and list(out) == [5, -3] and list(v) == [0, 0] and ve == -30 and list(st) == [0, 0]


def test_out_of_range_operands_are_refused(kernel) -> None:
    c = constants(0.9, 0.0)
    q, v = np.zeros(2, np.int8), np.zeros(2, np.int16)
    assert _call(kernel, q, -4, 8, np.full(2, 2**62 + 1, np.int64), 0, v, 0, 16, 1, 0, c, 0, 0, 0, True)[0] != 0
    assert _call(kernel, q, -4, 1, np.ones(2, np.int64), 0, v, 0, 16, 1, 0, c, 0, 0, 0, True)[0] != 0

"""The C kernel rctc_adamw_update (native/csrc/kernels/adamw_update.c) against the numpy reference
(runtime/intref/adamw.py), bit for bit: parameter, moments, exponents, count and statistics, with
both roundings, on a grid of constants, widths, exponents and step counts."""

from __future__ import annotations

from ctypes import c_int, c_int64, c_size_t, c_uint32, c_uint64, c_void_p

import numpy as np
import pytest

from rctc.bitwidth_rule import abs_sum
from rctc.native.build import load_library
from rctc.rng import random_words
from rctc.runtime.intref.adamw import adamw_update
from rctc.runtime.kernels.int_adamw import constants, lr_exact

DRAW = 1 << 40


@pytest.fixture(scope="module")
def kernel():
    fn = load_library().rctc_adamw_update
    fn.restype = c_int
    fn.argtypes = [c_size_t, c_void_p, c_int, c_int, c_int, c_void_p, c_int, c_void_p, c_void_p, c_void_p, c_void_p,
                   c_void_p, c_int64, c_int, c_void_p, c_uint64, c_uint32, c_uint32, c_int, c_void_p, c_void_p,
                   c_void_p, c_void_p]
    return fn


def _p(a: np.ndarray) -> int:
    return a.ctypes.data


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize(("b1", "b2", "eps", "wd", "alpha"), [
    (0.9, 0.999, 1e-8, 0.01, 1.0), (0.0, 0.99, 1e-3, 0.0, 1 / 32), (0.8, 0.9999, 1e-6, 0.1, 0.1)])
def test_c_equals_numpy(kernel, b1: float, b2: float, eps: float, wd: float, alpha: float, stochastic: bool) -> None:
    rng = np.random.default_rng(int(b2 * 1e4) + stochastic)
    c = constants(b1, b2, eps, wd, alpha)
    consts = np.array(c.as_list(), np.int64)
    for trial in range(6):
        n = int(rng.choice([1, 7, 300, 1000]))
        bits = int(rng.integers(3, 17))
        dtype = np.int8 if bits <= 8 else np.int16
        qm = 2 ** (bits - 1) - 1
        q = rng.integers(-qm, qm + 1, n).astype(dtype)
        e, ge = int(rng.integers(-20, -2)), int(rng.integers(-40, 0))
        gq = ((rng.integers(-2**40, 2**40, n) * (rng.random(n) < 0.9)) >> rng.integers(0, 30, n)).astype(np.int64)
        t = int(rng.choice([0, 1, 50, 3000]))
        if t:
            mq = rng.integers(-2**31 + 1, 2**31, n).astype(np.int32)
            vq = rng.integers(0, 2**31 - 1, n).astype(np.int32)
            me, ve = ge + int(rng.integers(-20, 5)), 2 * ge + int(rng.integers(-5, 30))
        else:
            mq, vq, me, ve = np.zeros(n, np.int32), np.zeros(n, np.int32), 0, 0
        lr_m, lr_k = lr_exact(float(10 ** rng.uniform(-4, -1)))
        seed, step, node = int(rng.integers(0, 2**63)), int(rng.integers(0, 2**31)), int(rng.integers(0, 2**31))
        words = tuple(random_words(seed, step, node, d * DRAW, n) for d in range(3)) if stochastic else None
        ref = adamw_update(q, e, bits, gq, ge, mq, me, vq, ve, t, lr_m, lr_k, c, words)
        q_out, m_out, v_out = np.empty_like(q), np.empty_like(mq), np.empty_like(vq)
        me_c, ve_c, t_c = np.array([me], np.int32), np.array([ve], np.int32), np.array([t], np.int64)
        stats = np.zeros(2, np.uint64)
        rc = kernel(n, _p(q), q.itemsize, e, bits, _p(gq), ge, _p(mq), _p(vq), _p(me_c), _p(ve_c), _p(t_c), lr_m, lr_k,
                    _p(consts), seed, step, node, int(stochastic), _p(q_out), _p(m_out), _p(v_out), _p(stats))
        assert rc == 0
        assert np.array_equal(q_out, ref.q), trial
        assert np.array_equal(m_out, ref.mq) and int(me_c[0]) == ref.me, trial
        assert np.array_equal(v_out, ref.vq) and int(ve_c[0]) == ref.ve, trial
        assert int(t_c[0]) == ref.t
        assert int(stats[0]) == abs_sum(ref.u) and int(stats[1]) == ref.saturated, trial


def test_zero_gradient_keeps_the_exponents(kernel) -> None:
    c = constants(0.9, 0.999, 1e-8, 0.0)
    q = np.array([5, -3], np.int8)
    z = np.zeros(2, np.int32)
    me, ve, t = np.array([-7], np.int32), np.array([-30], np.int32), np.array([4], np.int64)
    out, mo, vo, st = np.empty_like(q), np.empty_like(z), np.empty_like(z), np.zeros(2, np.uint64)
    rc = kernel(2, _p(q), 1, -4, 8, _p(np.zeros(2, np.int64)), -10, _p(z), _p(z), _p(me), _p(ve), _p(t), 1, -10,
                _p(np.array(c.as_list(), np.int64)), 0, 0, 0, 1, _p(out), _p(mo), _p(vo), _p(st))
    assert rc == 0 and list(out) == [5, -3] and int(me[0]) == -7 and int(ve[0]) == -30 and int(t[0]) == 5


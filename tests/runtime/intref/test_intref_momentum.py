"""Integer momentum SGD (runtime/intref/momentum.py, docs/numerics.md "Momentum SGD in rct mode"):
bit for bit against a plain Python-int restatement of the documented steps, and within the
stated bound of float64 momentum SGD (torch.optim.SGD's formula) from the same integer state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rctc.runtime.intref.momentum import FRAC, G_BITS, HEADROOM, MU_BITS, momentum_update
from rctc.runtime.kernels.int_adamw import lr_exact
from rctc.runtime.kernels.int_momentum import constants
from tests.runtime.intref._plain import qmax, rand_add, requant, rshift


def _plain(q, e, bits, gq, ge, vq, ve, vbits, lr_m, lr_k, c, words):
    """The documented algorithm, one Python int at a time."""
    gq = [int(x) for x in gq]
    m = max((abs(x) for x in gq), default=0)
    s = max(0, m.bit_length() - G_BITS)
    g = [rshift(x, s) for x in gq]
    eg = ge + s
    terms = [([int(v) * c.mu for v in vq], ve - MU_BITS), ([x * c.ca for x in g], eg - c.fa)]
    if c.w:
        terms.append(([int(x) * c.w for x in q], e - c.fw))
    ec = min(t[1] for t in terms)
    for vals, ex in terms:
        mx = max((abs(v) for v in vals), default=0)
        if mx:
            ec = max(ec, ex - (HEADROOM - mx.bit_length()))
    acc = [sum(rshift(vals[i], ec - ex) for vals, ex in terms) for i in range(len(q))]
    new_v, new_ve = requant(acc, ec, vbits, None if words is None else [int(w) for w in words[0]])
    if not any(new_v):
        new_ve = ve
    k = lr_k + new_ve - e + FRAC
    out, us = [], []
    for i, v in enumerate(new_v):
        x = v * lr_m
        if k <= 0:
            u = -rshift(x, -k)
        else:
            u = -max(-(2**61), min(2**61, x * 2**k))
        us.append(u)
        r = None if words is None else rand_add(int(words[1][i]), FRAC)
        out.append(max(-qmax(bits), min(qmax(bits), int(q[i]) + rshift(u, FRAC, r))))
    return out, new_v, new_ve, us


CONSTS = [(0.9, 0.0, 1.0), (0.5, 5e-4, 1.0), (0.99, 0.01, 1 / 3), (0.0, 0.0, 1.0), (1.0, 0.1, 4.0)]


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize(("mu", "wd", "alpha"), CONSTS)
def test_matches_the_plain_reference(mu: float, wd: float, alpha: float, stochastic: bool) -> None:
    rng = np.random.default_rng(int(mu * 100) + int(wd * 1e4) + stochastic)
    c = constants(mu, wd, alpha)
    for trial in range(8):
        n = int(rng.choice([1, 5, 64]))
        bits, vbits = int(rng.integers(2, 17)), int(rng.choice([8, 16, 24, 32]))
        q = rng.integers(-qmax(bits), qmax(bits) + 1, n).astype(np.int8 if bits <= 8 else np.int16)
        gq = (rng.integers(-2**45, 2**45, n) >> rng.integers(0, 45, n)).astype(np.int64)
        vdt = np.int8 if vbits <= 8 else np.int16 if vbits <= 16 else np.int32
        vq = rng.integers(-qmax(vbits), qmax(vbits) + 1, n).astype(vdt) * (trial % 4 != 0)
        e, ge, ve = int(rng.integers(-16, 0)), int(rng.integers(-50, -10)), int(rng.integers(-40, -5))
        lr_m, lr_k = lr_exact(float(10 ** rng.uniform(-4, 0)))
        words = (rng.integers(0, 2**32, n, dtype=np.uint32), rng.integers(0, 2**32, n, dtype=np.uint32))
        w = words if stochastic else None
        r = momentum_update(q, e, bits, gq, ge, vq, ve, vbits, lr_m, lr_k, c, w)
        out, new_v, new_ve, us = _plain(q, e, bits, gq, ge, vq, ve, vbits, lr_m, lr_k, c, w)
        assert r.q.tolist() == out and r.vq.tolist() == new_v and r.ve == new_ve, trial
        assert r.u.tolist() == us and r.vq.dtype == vq.dtype and r.q.dtype == q.dtype


@pytest.mark.parametrize(("mu", "wd", "alpha"), CONSTS)
def test_within_the_bound_of_float64(mu: float, wd: float, alpha: float) -> None:
    """One step with nearest rounding from the same integer state: ``|v' - v64| <= 2^ve' (one
    requantise half-step and the alignment roundings) + alpha 2^(eg-1) (the gradient's rounding) +
    2^-29 (|mu v| + |alpha g| + |wd w|) (the constants' 30-bit mantissas)``; the step before its
    rounding within ``lr |v' - v64| / 2^e + 2^-28`` of float64's, then at most half a last bit."""
    rng = np.random.default_rng(7)
    c = constants(mu, wd, alpha)
    mu32, wd32, a32 = (float(np.float32(x)) for x in (mu, wd, alpha))
    for _ in range(20):
        n, bits = 200, 8
        q = rng.integers(-127, 128, n).astype(np.int8)
        gq = rng.integers(-2**40, 2**40, n).astype(np.int64)
        vq = rng.integers(-32767, 32768, n).astype(np.int16)
        e, ge, ve = -7, int(rng.integers(-50, -40)), int(rng.integers(-25, -15))
        lr = float(np.float32(10 ** rng.uniform(-3, -1)))
        lr_m, lr_k = lr_exact(lr)
        r = momentum_update(q, e, bits, gq, ge, vq, ve, 16, lr_m, lr_k, c, None)
        w = q * 2.0**e
        v64 = mu32 * vq * 2.0**ve + a32 * (gq * 2.0**ge) + wd32 * w
        eg = ge + max(0, int(np.max(np.abs(gq))).bit_length() - G_BITS)
        bound = (2.0**r.ve + a32 * 2.0 ** (eg - 1)
                 + 2.0**-29 * (np.abs(mu32 * vq * 2.0**ve) + np.abs(a32 * gq * 2.0**ge) + np.abs(wd32 * w)))
        dv = np.abs(r.vq * 2.0**r.ve - v64)
        assert np.all(dv <= bound)
        u64 = -lr * v64 / 2.0**e
        du = np.abs(r.u * 2.0**-FRAC - u64)
        assert np.all(du <= lr * bound / 2.0**e + 2.0**-FRAC)
        want = np.clip(q + u64, -127, 127)
        assert np.all(np.abs(r.q - want) <= 0.5 + lr * bound / 2.0**e + 2.0**-FRAC + 1e-12)
        assert r.saturated == int(np.count_nonzero(np.abs(r.q.astype(int)) == 127))


def test_stochastic_rounding_is_unbiased() -> None:
    """Averaged over many word draws, the stochastically rounded velocity and step tend to the
    exact ones (mean error well inside one last bit)."""
    rng = np.random.default_rng(3)
    c = constants(0.9, 0.0)
    n = 4096
    q = np.zeros(n, np.int8)
    gq = np.full(n, 3, np.int64)  # v = 3 * 2^-20 exactly representable; step = -lr v / 2^e
    vq = np.zeros(n, np.int16)
    lr_m, lr_k = lr_exact(0.25)
    words = (rng.integers(0, 2**32, n, dtype=np.uint32), rng.integers(0, 2**32, n, dtype=np.uint32))
    r = momentum_update(q, -18, 8, gq, -20, vq, 0, 16, lr_m, lr_k, c, words)
    exact_step = -0.25 * 3 * 2.0**-20 / 2.0**-18  # -0.1875 last bits
    assert abs(float(np.mean(r.q)) - exact_step) < 0.03
    assert math.isclose(float(np.mean(r.vq * 2.0**r.ve)), 3 * 2.0**-20, rel_tol=1e-9)


def test_constants_are_refused_out_of_range() -> None:
    with pytest.raises(ValueError, match="momentum"):
        constants(1.5, 0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        constants(0.9, -1.0)

"""rct AdamW on integer state (runtime/intref/adamw.py, docs/numerics.md "AdamW in rct mode").

1. The vectorised int64 kernel equals a plain Python-int restatement of the documented steps,
   element by element, bit for bit (random words included), on a parametrised grid.
2. Against float64 AdamW from the same integer state, on a grid of betas / eps / decay / alpha /
   step counts / exponents: the moments are within their stated bounds, and the step (before its
   stochastic rounding) lies within the interval the moments' errors allow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _plain import rand_add, rshift

from rctc.runtime.intref.adamw import FRAC, M_BITS, V_BITS, AdamWConsts, adamw_update, isqrt_array, step_scalars
from rctc.runtime.kernels.int_adamw import constants, lr_exact

GRID = [(b1, b2, eps, wd, alpha) for b1 in (0.0, 0.9) for b2 in (0.99, 0.999)
        for eps, wd, alpha in ((1e-8, 0.01, 1.0), (1e-3, 0.0, 1 / 32), (1e-6, 0.1, 0.1))]


def _align2(a: int, ea: int, b: int, eb: int, ma: int, mb: int) -> tuple[int, int, int]:
    """core.align of two tensors with max magnitudes ma, mb (headroom 61), on single elements."""
    e_c = min(ea, eb)
    for m, e in ((ma, ea), (mb, eb)):
        if m:
            e_c = max(e_c, e - (61 - m.bit_length()))
    return rshift(a, e_c - ea), rshift(b, e_c - eb), e_c


def _requant_s(m: int, bits: int, stochastic: bool) -> int:
    qm = 2 ** (bits - 1) - 1
    s = 0
    while (m + ((2**s - 1) if stochastic else (2 ** (s - 1) if s else 0))) // 2**s > qm:
        s += 1
    return s


def _plain_moment(a: list[int], ea: int, b: list[int], eb: int, keep: int, bits: int,
                  words: list[int] | None) -> tuple[list[int], int]:
    ma, mb = max(map(abs, a)), max(map(abs, b))
    al = [_align2(x, ea, y, eb, ma, mb) for x, y in zip(a, b)]
    ec = al[0][2]
    sums = [x + y for x, y, _ in al]
    s = _requant_s(max(map(abs, sums)), bits, words is not None)
    q = [rshift(v, s, None if words is None else rand_add(w, s) if s else 0) for v, w in
         zip(sums, words or [0] * len(sums))]
    return q, (ec + s if any(q) else keep)


def _plain(q: list[int], e: int, bits: int, gq: list[int], ge: int, mq: list[int], me: int, vq: list[int], ve: int,
           t: int, lr_m: int, lr_k: int, c: AdamWConsts, words: tuple | None) -> tuple:
    """The documented steps on Python ints, one element at a time."""
    wm, wv, wq = words if words is not None else (None, None, None)
    s = max(0, max(map(abs, gq)).bit_length() - 22)
    g = [rshift(x, s) for x in gq]
    eg = ge + s
    m2, me2 = _plain_moment([x * c.b1 for x in mq], me - 30, [x * c.c1 for x in g], eg - c.f1, me, M_BITS, wm)
    v2, ve2 = _plain_moment([x * c.b2 for x in vq], ve - 30, [x * x * c.c2 for x in g], 2 * eg - c.f2, ve, V_BITS,
                            wv)
    sc = step_scalars(c, t + 1, lr_m, lr_k)
    ev = ve2
    vv = [max(x, 1) for x in v2]
    if ev % 2:
        vv, ev = [2 * x for x in vv], ev - 1
    d = [math.isqrt(x * 2**30) * sc.r for x in vv]
    ed = ev // 2 - 15 + sc.kr
    over = c.em.bit_length() + c.ee - ed - 61
    if over > 0:
        d, ed = [rshift(x, over) for x in d], ed + over
    den = [x + rshift(c.em, ed - c.ee) for x in d]
    kd = max(0, max(den).bit_length() - 31)
    den = [max(rshift(x, kd), 1) for x in den]
    ed += kd

    def sat(x: int, k: int) -> int:
        if k <= 0:
            return rshift(x, -k)
        return max(-(2**61), min(2**61, x * 2**k))

    # round(m l 2^14 / den), half up: Python ints form the product exactly
    u = [-sat((mm * sc.l * 2**15 + dn) // (2 * dn), sc.fl + me2 - ed - e - 14 + FRAC) for mm, dn in zip(m2, den)]
    if c.w:
        u = [x - sat(p * sc.lw, sc.klw + FRAC) for x, p in zip(u, q)]
    qm = 2 ** (bits - 1) - 1
    new = [max(-qm, min(qm, p + rshift(x, FRAC, None if wq is None else rand_add(w, FRAC))))
           for p, x, w in zip(q, u, wq or [0] * len(u))]
    return new, m2, me2, v2, ve2, u


def _state(rng: np.random.Generator, n: int, t: int) -> tuple:
    ge = int(rng.integers(-40, 0))
    gq = (rng.integers(-2**30, 2**30, n) * (rng.random(n) < 0.9)) >> rng.integers(0, 20, n)
    if t == 0:
        return gq, ge, np.zeros(n, np.int32), 0, np.zeros(n, np.int32), 0
    me = ge + int(rng.integers(-20, -4))
    ve = 2 * ge + int(rng.integers(0, 24))
    return (gq, ge, rng.integers(-32767, 32768, n).astype(np.int16), me,
            rng.integers(0, 2**31 - 1, n).astype(np.int32), ve)


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize(("b1", "b2", "eps", "wd", "alpha"), GRID)
def test_kernel_equals_plain_int_reference(b1: float, b2: float, eps: float, wd: float, alpha: float,
                                           stochastic: bool) -> None:
    rng = np.random.default_rng(abs(hash((b1, b2, eps, wd, alpha, stochastic))) % 2**32)
    c = constants(b1, b2, eps, wd, alpha)
    for trial in range(4):
        n, t = 37, int(rng.choice([0, 1, 9, 2000]))
        bits = int(rng.integers(4, 17))
        qm = 2 ** (bits - 1) - 1
        q = rng.integers(-qm, qm + 1, n).astype(np.int16)
        e = int(rng.integers(-20, -2))
        gq, ge, mq, me, vq, ve = _state(rng, n, t)
        lr_m, lr_k = lr_exact(float(10 ** rng.uniform(-4, -1)))
        words = tuple(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32) for _ in range(3)) \
            if stochastic else None
        r = adamw_update(q, e, bits, gq, ge, mq, me, vq, ve, t, lr_m, lr_k, c, words)
        ref = _plain(q.tolist(), e, bits, gq.tolist(), ge, mq.tolist(), me, vq.tolist(), ve, t, lr_m, lr_k, c,
                     None if words is None else tuple(w.tolist() for w in words))
        assert r.q.dtype == q.dtype and r.mq.dtype == np.int32 and r.vq.dtype == np.int32
        assert r.q.tolist() == ref[0], trial
        assert (r.mq.tolist(), r.me, r.vq.tolist(), r.ve) == ref[1:5], trial
        assert r.u.tolist() == ref[5], trial
        assert r.t == t + 1
        assert (r.vq >= 0).all()


def test_isqrt_array_is_the_floor_root() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 2**62, 2000), np.arange(0, 300), [2**62 - 1, 2**60, 2**61 + 7]])
    assert isqrt_array(x).tolist() == [math.isqrt(int(v)) for v in x]


def _float64_step(q: np.ndarray, e: int, gq: np.ndarray, ge: int, mq: np.ndarray, me: int, vq: np.ndarray, ve: int,
                  t: int, lr: float, b1: float, b2: float, eps: float, wd: float, alpha: float) -> tuple:
    """torch.optim.AdamW's step in float64 from the dequantised integer state (units: q's last bit)."""
    g = gq * 2.0**ge * alpha
    m = b1 * (mq * 2.0**me) + (1 - b1) * g
    v = b2 * (vq * 2.0**ve) + (1 - b2) * g * g
    tt = t + 1
    den = np.sqrt(v / (1 - b2**tt)) + eps
    ua = -(lr / (1 - b1**tt)) * m / den / 2.0**e
    return m, v, g, ua, -lr * wd * q.astype(np.float64), den


@pytest.mark.parametrize(("b1", "b2", "eps", "wd", "alpha"), GRID)
def test_error_against_float64_adamw_within_the_stated_bound(b1: float, b2: float, eps: float, wd: float,
                                                             alpha: float) -> None:
    rng = np.random.default_rng(abs(hash((b1, b2, eps, wd, alpha))) % 2**32)
    c = constants(b1, b2, eps, wd, alpha)
    checked = small = 0
    for trial in range(12):
        n, t = 64, int(rng.choice([0, 1, 5, 100, 3000]))
        bits, e = int(rng.integers(8, 17)), int(rng.integers(-20, -4))
        qm = 2 ** (bits - 1) - 1
        q = rng.integers(-qm, qm + 1, n).astype(np.int32)
        gq, ge, mq, me, vq, ve = _state(rng, n, t)
        if t > 0:  # a few elements whose second moment vanishes (v read as one last bit) and m does not
            gq[:3], vq[:3] = 0, 0
        lr = float(np.float32(10 ** rng.uniform(-4, -1)))
        r = adamw_update(q, e, bits, gq, ge, mq, me, vq, ve, t, *lr_exact(lr), c, None)
        m, v, g, ua, uw, den = _float64_step(q, e, gq, ge, mq, me, vq, ve, t, lr, b1, b2, eps, wd, alpha)
        s = max(0, int(np.max(np.abs(gq))).bit_length() - 22)
        eg = ge + s
        # moments: half a last bit (nearest) + the gradient's 22-bit rounding + the 2^-30 / 2^-17 constants
        dm = 2.0 ** (r.me - 1) + (1 - b1) * alpha * 2.0 ** (eg - 1) + 2.0**-29 * (np.abs(m) + np.abs(g))
        dv = (2.0 ** (r.ve - 1) + (1 - b2) * alpha**2 * (np.abs(gq) * 2.0**ge * 2.0**eg + 2.0 ** (2 * eg - 2))
              + 2.0**-16 * np.abs(v))
        assert np.all(np.abs(r.mq * 2.0**r.me - m) <= dm), trial
        assert np.all(np.abs(r.vq * 2.0**r.ve - v) <= dv), trial
        # the step: within the interval of m +- dm, v +- dv, plus 2^-13 relative (constants, rsqrt, isqrt,
        # the normalised denominator) and 2^-14 of a last bit (the 2^-28 grid, the division)
        ok = r.vq > 16
        sq = np.sqrt(np.maximum(v, 0) / (1 - b2 ** (t + 1)))
        rel = dm / np.maximum(np.abs(m), 1e-300) + 0.5 * (dv / np.maximum(v, 1e-300)) * sq / (sq + eps)
        tol = np.abs(ua) * (rel + 2.0**-13) + np.abs(uw) * 2.0**-28 + 2.0**-14
        err = np.abs(r.u / 2.0**FRAC - (ua + uw))
        assert np.all(err[ok] <= tol[ok]), (trial, float(np.max((err - tol)[ok])))
        # vq <= 16: outside that bound, but the step is bounded by lr |m| / sqrt(2^ve) (v read as at
        # least one last bit), bias-corrected, in units of q's last bit
        tt = t + 1
        cap = ((lr / (1 - b1**tt)) * np.abs(r.mq * 2.0**r.me) / np.sqrt(2.0**r.ve / (1 - b2**tt)) / 2.0**e
               * (1 + 2.0**-12) + 2.0**-14)
        step_a = np.abs(r.u / 2.0**FRAC - uw)
        assert np.all(step_a[~ok] <= cap[~ok] + np.abs(uw[~ok]) * 2.0**-28), (trial, float(np.max((step_a - cap)[~ok])))
        checked += int(ok.sum())
        small += int((~ok).sum())
    assert checked > 300 and small > 0

"""x86/iq_norm_loops_avx2.c and x86/iq_norm_loops_avx512.c against the portable loops of
iq_norm_loops.c (the BatchNorm kernels' per-element work), bit for bit, over odd lengths (every
tail of the 4- and 8-lane steps) and values at the ends of the ranges the kernels feed them
(wrapping sums and products included), each variant on the CPUs that run it."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
import pytest

from rctc.native.kernels import Kernels

I64P = ctypes.POINTER(ctypes.c_int64)
LENGTHS = [0, 1, 7, 8, 9, 15, 16, 17, 63, 1001]


def _fn(lib: ctypes.CDLL, name: str, res: type | None, *args: type) -> ctypes._CFuncPtr:
    f = getattr(lib, name)
    f.restype, f.argtypes = res, list(args)
    return f


def _p(a: np.ndarray) -> int:
    return a.ctypes.data


@pytest.fixture(scope="module", params=["avx2", "avx512"])
def variant(request: pytest.FixtureRequest, kernels: Kernels) -> str:
    """A SIMD variant of the loops this CPU runs (the test is skipped for one it cannot)."""
    if request.param == "avx512":
        dq = _fn(kernels.lib, "rctc_cpu_has_avx512dq", ctypes.c_int)
        if not (kernels.has_variant("avx512vnni") and dq()):
            pytest.skip("this CPU has no AVX-512 (VNNI level and DQ)")
    elif not kernels.has_variant("avx2"):
        pytest.skip("this CPU has no AVX2")
    return request.param


Pair = Callable[..., list]


@pytest.fixture
def pair(kernels: Kernels, variant: str) -> Pair:
    """``pair(loop, restype, *argtypes)``: the (SIMD variant, portable) functions of one loop."""
    def both(name: str, res: type | None, *args: type) -> list:
        return [_fn(kernels.lib, f"rctc_norm_{name}_{v}", res, *args) for v in (variant, "portable")]
    return both


@pytest.mark.parametrize("n", LENGTHS)
def test_sums_and_scale(pair: Pair, n: int) -> None:
    rng = np.random.default_rng(n)
    sums = pair("sums", None, ctypes.c_size_t, ctypes.c_void_p, I64P, I64P)
    scale = pair("scale", None, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
    for lim in (2**28, 2**62):  # the kernels' range, then squares and sums that wrap modulo 2^64
        x = rng.integers(-lim, lim, n, dtype=np.int64)
        got = []
        for f in sums:
            a, b = ctypes.c_int64(), ctypes.c_int64()
            f(n, _p(x), ctypes.byref(a), ctypes.byref(b))
            got.append((a.value, b.value))
        with np.errstate(over="ignore"):
            assert got[0] == got[1] == (int(x.sum()), int((x * x).sum()))
    acc = rng.integers(-(2**62), 2**62, n, dtype=np.int64)
    for mult in (0, -1, 3, 2**31 - 1, -(2**40) - 7):  # products that wrap modulo 2^64
        outs = [np.zeros(n, np.int64) for _ in scale]
        for f, o in zip(scale, outs):
            f(n, _p(acc), mult, _p(o))
        with np.errstate(over="ignore"):
            assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1], acc * np.int64(mult))


def _xhat_loops(pair: Pair) -> tuple[list, list, list]:
    """The (SIMD, portable) pairs of xhat_dot, dx_x and affine."""
    xd = pair("xhat_dot", None, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64,
              ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, I64P, I64P)
    dxx = pair("dx_x", ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64,
               ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
    aff = pair("affine", ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64,
               ctypes.c_int64, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
    return xd, dxx, aff


@pytest.mark.parametrize("n", LENGTHS)
def test_xhat_dx_and_affine(pair: Pair, n: int) -> None:
    rng = np.random.default_rng(100 + n)
    xd, dxx, aff = _xhat_loops(pair)
    N = max(n, 1)
    for lim in (1, 127, 32767):
        if N * lim >= 2**29:
            continue
        x = rng.integers(-lim, lim + 1, n, dtype=np.int64)
        dy = rng.integers(-(2**15), 2**15, n, dtype=np.int64)
        s1 = int(x.sum())
        for m, sh in ((1, 1), (2**32, 20), (3_000_000_007, 45), (12345, 2)):
            res = []
            for f in xd:
                xh, g, b = np.zeros(n, np.int64), ctypes.c_int64(), ctypes.c_int64()
                f(n, _p(x), N, s1, m, sh, _p(dy), _p(xh), ctypes.byref(g), ctypes.byref(b))
                res.append((xh, g.value, b.value))
            assert np.array_equal(res[0][0], res[1][0]) and res[0][1:] == res[1][1:], (lim, m, sh)
            xh = res[0][0]
            for m1, m2 in ((0, 0), (-(2**40), 2**31 + 5), (2**45, -(2**20))):
                with np.errstate(over="ignore"):  # the plain int64 formula over the xhat checked above
                    want = (dy << 16) - np.int64(m1) - ((xh * np.int64(m2) + np.int64(2**15)) >> 16)
                accs = [np.zeros(n, np.int64) for _ in dxx]
                maxima = [f(n, _p(x), N, s1, m, sh, _p(dy), m1, m2, _p(a)) for f, a in zip(dxx, accs)]
                assert np.array_equal(accs[0], want) and np.array_equal(accs[1], want), (lim, m, sh, m1, m2)
                assert maxima[0] == maxima[1] == max((abs(int(v)) for v in want), default=0)
                for f in dxx:  # in place over x, then over dy, as the threaded backward calls it
                    bx, bd = x.copy(), dy.copy()
                    assert f(n, _p(bx), N, s1, m, sh, _p(dy), m1, m2, _p(bx)) == maxima[1]
                    assert f(n, _p(x), N, s1, m, sh, _p(bd), m1, m2, _p(bd)) == maxima[1]
                    assert np.array_equal(bx, want) and np.array_equal(bd, want)
            for g, bias in ((1, 0), (-(2**15), 2**30), (32767, -(2**50))):
                accs = [np.zeros(n, np.int64) for _ in aff]
                maxima = [f(n, _p(x), N, s1, m, sh, g, bias, _p(a)) for f, a in zip(aff, accs)]
                assert maxima[0] == maxima[1] and np.array_equal(accs[0], accs[1]), (lim, m, sh, g)


@pytest.mark.parametrize("n", LENGTHS)
def test_load_widens_like_the_portable_loop(pair: Pair, n: int) -> None:
    """rctc_norm_load_*: elements off .. off + n - 1 of an int8 / int16 / int32 / int64 run widened
    to int64 (the SIMD widening for int8 / int16), extremes included."""
    load = pair("load", None, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p)
    rng = np.random.default_rng(200 + n)
    for dt in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        src = rng.integers(info.min, info.max, n + 5, dtype=np.int64, endpoint=True).astype(dt)
        src[: min(2, n + 5)] = [info.min, info.max][: min(2, n + 5)]
        for off in (0, 3):
            if off + n > src.size:
                continue
            outs = [np.zeros(n, np.int64) for _ in load]
            for f, o in zip(load, outs):
                f(n, _p(src), src.itemsize, off, _p(o))
            assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1], src[off:off + n].astype(np.int64))


@pytest.mark.parametrize("m, sh", [(2**32 - 3, 31), (2**32 - 1, 31), (2**31, 31), (2**31 - 1, 30),
                                   (3_000_000_007, 32), (2**32, 33), (-(2**31), 31), (-(2**31) - 1, 32)])
def test_products_at_the_32_bit_edges(pair: Pair, m: int, sh: int) -> None:
    """The 32-bit product paths (vpmuldq where an operand provably fits 32 bits, vpmullq where it
    may not) at the edges of their conditions: N x - s1 near +-2^30 (N max|x| just under 2^29),
    multipliers at and around 2^31 and 2^32, xhat's bound just under and just over 2^31, and
    constants (m2, gamma) of every kind, against the portable loops and the plain int64 formula."""
    n, N, lim = 203, 2**14, 2**15 - 1  # N lim = 2^29 - 2^14
    rng = np.random.default_rng(abs(m) % 1000 + sh)
    xd, dxx, aff = _xhat_loops(pair)
    x = rng.choice(np.array([-lim, lim, -lim + 1, lim - 1, 0, 1, -1], np.int64), n)
    dy = rng.integers(-(2**31), 2**31, n, dtype=np.int64)  # any int32 storage
    dy[:4] = [-(2**31), 2**31 - 1, -(2**31), 2**31 - 1]
    for s1 in (N * lim, -N * lim, 0):
        with np.errstate(over="ignore"):
            want_xh = ((np.int64(N) * x - np.int64(s1)) * np.int64(m) + np.int64(2 ** (sh - 1))) >> sh
        res = []
        for f in xd:
            xh, g, b = np.zeros(n, np.int64), ctypes.c_int64(), ctypes.c_int64()
            f(n, _p(x), N, s1, m, sh, _p(dy), _p(xh), ctypes.byref(g), ctypes.byref(b))
            res.append((xh, g.value, b.value))
        assert np.array_equal(res[0][0], want_xh) and np.array_equal(res[1][0], want_xh), (s1, m, sh)
        with np.errstate(over="ignore"):
            assert res[0][1:] == res[1][1:] == (int((dy * want_xh).sum()), int(dy.sum()))
        for m2 in (2**31 - 1, -(2**31), 2**31, 2**32 - 1, 2**32, -(2**31) - 1, -(2**33) - 3):
            with np.errstate(over="ignore"):
                want = (dy << 16) - np.int64(7) - ((want_xh * np.int64(m2) + np.int64(2**15)) >> 16)
            accs = [np.zeros(n, np.int64) for _ in dxx]
            maxima = [f(n, _p(x), N, s1, m, sh, _p(dy), 7, m2, _p(a)) for f, a in zip(dxx, accs)]
            assert np.array_equal(accs[0], want) and np.array_equal(accs[1], want), (s1, m, sh, m2)
            assert maxima[0] == maxima[1]
        for g in (127, -(2**31), 2**31 + 1, 2**32 - 1, -(2**31) - 1):
            with np.errstate(over="ignore"):
                want = want_xh * np.int64(g) + np.int64(-5)
            accs = [np.zeros(n, np.int64) for _ in aff]
            maxima = [f(n, _p(x), N, s1, m, sh, g, -5, _p(a)) for f, a in zip(aff, accs)]
            assert np.array_equal(accs[0], want) and np.array_equal(accs[1], want), (s1, m, sh, g)
            assert maxima[0] == maxima[1]


@pytest.mark.parametrize("n", LENGTHS + [64, 127, 128, 4096 * 64 + 70])
def test_sums_run_reads_the_stored_run(pair: Pair, n: int) -> None:
    """rctc_norm_sums_run_*: sums, sums of squares and extremes of a stored int8 / int16 / int32 /
    int64 run (the SIMD int8 path's 32-bit lanes flushed every 2^12 steps: the last length runs
    past one flush), added to what the accumulators held, against numpy."""
    f = pair("sums_run", None, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, I64P, I64P, I64P, I64P)
    rng = np.random.default_rng(300 + n)
    for dt in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        src = rng.integers(info.min, info.max, n + 3, dtype=np.int64, endpoint=True).astype(dt)
        if dt == np.int8 and n > 1000:
            src[3:] = -128  # every square at its largest: the int32 lanes' worst case
            src[n // 2] = 127
        off = 3 if n else 0
        run = src[off:off + n].astype(np.int64)
        start = (5, -7, 11, -13)
        with np.errstate(over="ignore"):
            want = (5 + int(run.sum()), -7 + int((run * run).sum()), min([11, *run.tolist()]),
                    max([-13, *run.tolist()]))
        for fn in f:
            acc = [ctypes.c_int64(v) for v in start]
            fn(n, _p(src), src.itemsize, off, *(ctypes.byref(a) for a in acc))
            got = tuple(a.value for a in acc)
            wrap = tuple(((v + 2**63) % 2**64) - 2**63 for v in want)
            assert got == wrap, (dt, n)


@pytest.mark.parametrize("n", LENGTHS + [512])
def test_run_loops_read_stored_runs_like_the_widened_loops(pair: Pair, kernels: Kernels, n: int) -> None:
    """rctc_norm_xhat_dot_run_* / dx_x_run_*: the loops over stored x and dy runs (read in place for
    int8, through widened blocks otherwise) at an offset, with and without the accumulator stored,
    equal the portable int64 loops on the widened runs, for every pair of storage widths."""
    xdr = pair("xhat_dot_run", None, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
               ctypes.c_size_t, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, I64P, I64P)
    dxr = pair("dx_x_run", ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
               ctypes.c_int, ctypes.c_size_t, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
               ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
    xd = _fn(kernels.lib, "rctc_norm_xhat_dot_portable", None, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int,
             ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, I64P, I64P)
    dxx = _fn(kernels.lib, "rctc_norm_dx_x_portable", ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int,
              ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
              ctypes.c_void_p)
    rng = np.random.default_rng(400 + n)
    N, off = max(n, 1) + 3, 3
    for xt, dt in ((np.int8, np.int8), (np.int8, np.int16), (np.int16, np.int8), (np.int32, np.int32),
                   (np.int64, np.int8)):
        lim = min(np.iinfo(xt).max, (2**29 - 1) // N)
        xs = rng.integers(-lim, lim + 1, n + off).astype(xt)
        ds = rng.integers(np.iinfo(dt).min, np.iinfo(dt).max, n + off, endpoint=True).astype(dt)
        x, dy = xs[off:].astype(np.int64), ds[off:].astype(np.int64)
        s1 = int(x.sum())
        for m, sh, m1, m2 in ((3_000_000_007, 45, -(2**20), 2**31 + 5), (2**32, 20, 7, -3), (12345, 2, 0, 2**40)):
            g0, b0 = ctypes.c_int64(), ctypes.c_int64()
            xh = np.zeros(n, np.int64)  # held: _p of a temporary would point at freed memory
            xd(n, _p(x), N, s1, m, sh, _p(dy), _p(xh), ctypes.byref(g0), ctypes.byref(b0))
            for f in xdr:
                g, b = ctypes.c_int64(), ctypes.c_int64()
                f(n, _p(xs), xs.itemsize, _p(ds), ds.itemsize, off, N, s1, m, sh, ctypes.byref(g), ctypes.byref(b))
                assert (g.value, b.value) == (g0.value, b0.value), (xt, dt, m)
            want = np.zeros(n, np.int64)
            mx0 = dxx(n, _p(x), N, s1, m, sh, _p(dy), m1, m2, _p(want))
            for f in dxr:
                acc = np.zeros(n, np.int64)
                assert f(n, _p(xs), xs.itemsize, _p(ds), ds.itemsize, off, N, s1, m, sh, m1, m2, _p(acc)) == mx0
                assert np.array_equal(acc, want), (xt, dt, m)
                assert f(n, _p(xs), xs.itemsize, _p(ds), ds.itemsize, off, N, s1, m, sh, m1, m2, None) == mx0

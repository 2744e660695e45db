"""The numpy reference's narrower / batched paths give the same integers as the plain arithmetic.

Each fast path (int32 rounding shifts, int32 alignment of Add / Sub, the vectorised per-group
scalars of the normalisations, BatchNorm's backward from its forward's saved statistics) is
checked bit for bit against the Python-int restatements in ``_plain`` or against the general
path, with cases placed on the bounds that select the narrow dtype.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rctc.runtime.intref import arith, core, expo, norm, norm_scalars, rows
from tests.runtime.intref._plain import requant, requant_array, rshift, tensor, words


def _edges() -> np.ndarray:
    """Accumulators around the int32 bound of the rounding shift (m + 2^s - 1 vs 2^31)."""
    rng = np.random.default_rng(3)
    big = [2**31 - 1, 2**31 - 2**24, 2**31 + 5, 2**30 + 1, 2**32, 2**40 + 7, 2**62]
    vals = list(rng.integers(-(2**31), 2**31, 300)) + big + [-v for v in big]
    return np.array(vals, np.int64)


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize("scale", [1, 2**-8, 2**-20, 2**-28, 2**-31])
def test_requantize_matches_plain_around_the_int32_bound(stochastic: bool, scale: float) -> None:
    acc = _edges()
    acc = np.array([int(v * scale) if scale < 1 else int(v) for v in acc], np.int64)
    w = words(acc.shape, 11) if stochastic else None
    for arr in (acc, acc.astype(np.int32) if core.absmax(acc) < 2**31 else acc):
        q, e = core.requantize(arr, -7, 8, rand=w)
        ref, ref_e = requant([int(v) for v in acc], -7, 8, None if w is None else [int(t) for t in w])
        assert e == ref_e and q.dtype == np.int8 and q.tolist() == ref


@pytest.mark.parametrize("s", [1, 5, 16, 30, 31, 32, 40, 62, 63])
def test_shift_round_matches_plain(s: int) -> None:
    x = _edges()
    x = x[np.abs(x) <= 2**62]
    w = words(x.shape, 5)
    assert core.shift_round(x, s).tolist() == [rshift(int(v), s) for v in x]
    r = [int(t) // 2 ** (32 - s) if s <= 32 else int(t) * 2 ** (s - 32) for t in w]
    assert core.shift_round(x, s, w).tolist() == [rshift(int(v), s, a) if s <= 62 else 0 for v, a in zip(x, r)]


@pytest.mark.parametrize("da", [-15, -14, -3, 0, 3, 14, 15, 40])
@pytest.mark.parametrize("dtypes", [(np.int8, np.int8), (np.int16, np.int8), (np.int16, np.int16), (np.int32, np.int8)])
def test_add_sub_narrow_alignment_matches_align(da: int, dtypes: tuple) -> None:
    rng = np.random.default_rng(da + 100)
    lim_a, lim_b = np.iinfo(dtypes[0]).max, np.iinfo(dtypes[1]).max
    qa = rng.integers(-lim_a, lim_a + 1, (4, 6)).astype(dtypes[0])
    qb = rng.integers(-lim_b, lim_b + 1, (1, 6)).astype(dtypes[1])
    qa[0, 0], qb[0, 0] = lim_a, -lim_b
    (a, b), e = core.align([(qa, -5 + da), (qb, -5)])
    w = words((4, 6), 2)
    for fn, exact in ((arith.add, a + b), (arith.sub, a - b)):
        for rand in (None, w):
            assert fn(qa, -5 + da, qb, -5, 8, rand)[1] == core.requantize(exact, e, 8, rand=rand)[1]
            assert np.array_equal(fn(qa, -5 + da, qb, -5, 8, rand)[0], core.requantize(exact, e, 8, rand=rand)[0])


@pytest.mark.parametrize("da", [-20, -3, 0, 9, 25])
def test_add_of_two_int32_accumulators_is_their_exact_sum_rounded_once(da: int) -> None:
    """What sum_accumulators makes a gradient sum read: two int32 product accumulators at their
    own exponents, against the Python-int sum (exact shifts) through the plain requantise."""
    rng = np.random.default_rng(40 + da)
    qa = rng.integers(-(2**31) + 1, 2**31, (3, 7)).astype(np.int32)
    qb = rng.integers(-(2**20), 2**20, (3, 7)).astype(np.int32)
    qa[0, 0] = 2**31 - 1
    ea, eb = -9 + da, -9
    e = min(ea, eb)
    exact = [(int(a) << (ea - e)) + (int(b) << (eb - e)) for a, b in zip(qa.reshape(-1), qb.reshape(-1))]
    w = words((3, 7), 6)
    for rand in (None, w):
        q, qe = arith.add(qa, ea, qb, eb, 8, rand)
        ref, ref_e = requant(exact, e, 8, None if rand is None else [int(t) for t in rand.reshape(-1)])
        assert qe == ref_e and q.reshape(-1).tolist() == ref


@pytest.mark.parametrize("dta, da", [(np.int32, 0), (np.int32, 5), (np.int32, 30), (np.int32, -7), (np.int8, 0),
                                     (np.int8, 24)])
@pytest.mark.parametrize("over", [0, 1])
def test_add_sub_int32_alignment_on_its_bound(dta: type, da: int, over: int) -> None:
    """Operands of up to 32 bits are aligned in int32 when their shifted peaks sum to at most
    2^31 - 1 (``over`` 0) and in int64 one past it (``over`` 1); either way Add and Sub give the
    Python-int exact sum / difference through the plain requantise."""
    rng = np.random.default_rng(70 + da + over)
    ea, eb = -6 + max(da, 0), -6 + max(-da, 0)
    e = min(ea, eb)
    s = abs(da)  # the shifted operand's shift; the other carries the rest of the bound
    px = min(np.iinfo(dta).max if da >= 0 else 2**31 - 1, (2**30) >> s)
    py = 2**31 - 1 + over - (px << s)
    qa = rng.integers(-px, px + 1, (3, 5)) if da >= 0 else rng.integers(-py, py + 1, (3, 5))
    qb = rng.integers(-py, py + 1, (3, 5)) if da >= 0 else rng.integers(-px, px + 1, (3, 5))
    qa[0, 0], qb[0, 0] = (px, -py) if da >= 0 else (py, -px)
    qa, qb = qa.astype(dta), qb.astype(np.int32)
    assert arith._aligned_pair(qa, ea, qb, eb)[0].dtype == (np.int64 if over else np.int32)
    w = words((3, 5), 8)
    for fn, op in ((arith.add, lambda x, y: x + y), (arith.sub, lambda x, y: x - y)):
        exact = [op(int(a) << (ea - e), int(b) << (eb - e)) for a, b in zip(qa.reshape(-1), qb.reshape(-1))]
        for rand in (None, w):
            q, qe = fn(qa, ea, qb, eb, 8, rand)
            ref, ref_e = requant(exact, e, 8, None if rand is None else [int(t) for t in rand.reshape(-1)])
            assert qe == ref_e and q.reshape(-1).tolist() == ref


def test_isqrt_array_matches_math_isqrt() -> None:
    rng = np.random.default_rng(3)
    sq = np.arange(0, 2**31, 2**31 // 977, dtype=np.int64) ** 2  # perfect squares and their neighbours
    v = np.concatenate([np.arange(0, 5000), sq, sq[1:] - 1, sq + 1, rng.integers(0, 2**62, 5000),
                        rng.integers(0, 2**40, 2000), [2**60 - 1, 2**60, 2**62 - 1]]).astype(np.int64)
    assert core.isqrt_array(v).tolist() == [math.isqrt(int(x)) for x in v]
    assert core.isqrt_array(v.reshape(-1, 1)).shape == (v.size, 1)
    for bad in ([-1], [2**62]):
        with pytest.raises(ValueError, match="isqrt_array"):
            core.isqrt_array(np.array(bad, np.int64))


def test_isqrt_normalised_two_steps_hit_the_floor_root_at_the_table_edges() -> None:
    """The two Newton steps from the 12-bit table: every bucket's first and last argument (the
    start's largest excess), perfect squares and their neighbours, random arguments."""
    t = np.arange(1 << 10, 1 << 12, dtype=np.int64)
    r = np.random.default_rng(8).integers(2**30, 2**31 - 1, 3000, dtype=np.int64)
    u = np.concatenate([t << 50, ((t + 1) << 50) - 1, r * r, r * r - 1, r * r + 1, (r + 1) * (r + 1) - 1,
                        np.random.default_rng(9).integers(2**60, 2**62, 5000, dtype=np.int64)])
    u = u[(u >= 2**60) & (u < 2**62)]
    assert core._isqrt_normalised(u).tolist() == [math.isqrt(int(x)) for x in u]


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
@pytest.mark.parametrize("shape", [(7,), (1, 1), (5, 3), (33, 16), (2, 3, 17), (4, 1, 32)])
def test_row_reductions_match_numpy_reduce(dtype: type, shape: tuple) -> None:
    lim = np.iinfo(dtype).max
    x = np.random.default_rng(sum(shape)).integers(-lim, lim + 1, shape).astype(dtype)
    x.reshape(-1)[0] = -lim - 1  # the dtype's minimum too
    wide = np.int64
    for keep in (False, True):
        assert np.array_equal(rows.row_max(x, keep), x.max(axis=-1, keepdims=keep))
        assert np.array_equal(rows.row_min(x, keep), x.min(axis=-1, keepdims=keep))
        assert rows.row_max(x, keep).dtype == x.dtype
        got = rows.row_sum(x, wide, keep)
        assert got.dtype == wide and np.array_equal(got, x.astype(wide).sum(axis=-1, keepdims=keep))
        small = x >> (x.dtype.itemsize * 4)  # products of halves fit the dtype's square
        dot = rows.row_dot(x.astype(wide), small, wide, keep)
        assert np.array_equal(dot, (x.astype(wide) * small.astype(wide)).sum(axis=-1, keepdims=keep))
    with pytest.raises(ValueError, match="row_max"):
        rows.row_max(np.zeros((3, 0), dtype))
    with pytest.raises(ValueError, match="row_dot"):
        rows.row_dot(x, np.zeros(x.shape[:-1] + (x.shape[-1] + 1,), dtype), wide)


def test_bit_length_and_rsqrt_arrays_match_python_ints() -> None:
    rng = np.random.default_rng(0)
    pw = np.int64(1) << np.arange(0, 63, dtype=np.int64)
    v = np.concatenate([np.arange(1, 3000), pw, pw[1:] - 1, pw[:-1] + 1, rng.integers(1, 2**63 - 1, 3000),
                        rng.integers(1, 2**40, 3000), [2**63 - 1]]).astype(np.int64)
    assert core.bit_length(v).tolist() == [int(x).bit_length() for x in v]
    got = core.bit_length(v.reshape(-1, 1))
    assert got.shape == (v.size, 1) and got.dtype == np.int64
    assert got.reshape(-1).tolist() == [int(x).bit_length() for x in v]
    assert core.bit_length(np.zeros(3, np.int64)).tolist() == [0, 0, 0]
    assert core.bit_length(np.zeros((0, 2), np.int64)).shape == (0, 2)
    m, f = core.rsqrt_fixed_array(v)
    assert list(zip(m.tolist(), f.tolist())) == [core.rsqrt_fixed(int(x)) for x in v]
    with pytest.raises(ValueError):
        core.rsqrt_fixed_array(np.array([3, 0], np.int64))


def test_multipliers_int64_path_matches_python_ints() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        g = int(rng.integers(1, 40))
        mult = rng.integers(-(2**61), 2**61, g)
        fs = rng.integers(-10, 90, g)
        mbits = int(rng.integers(5, 32))
        got, ge = norm_scalars.multipliers(mult.astype(object), fs, mbits)
        ref_g = max(abs(int(v)).bit_length() - int(f) for v, f in zip(mult, fs)) - mbits
        ref = [norm_scalars.rshift(int(v), int(f) + ref_g) for v, f in zip(mult, fs)]
        assert ge == ref_g and got.tolist() == ref
    vals, fs = [2**70, -(2**65), 3], [10, 3, 0]  # past int64: the Python-int path
    got, ge = norm_scalars.multipliers(np.array(vals, object), np.array(fs), 20)
    ref_g = max(abs(v).bit_length() - f for v, f in zip(vals, fs)) - 20
    assert ge == ref_g and got.tolist() == [norm_scalars.rshift(v, f + ref_g) for v, f in zip(vals, fs)]


@pytest.mark.parametrize("shape", [(8, 3, 4, 4), (32, 2, 5), (2, 4)])
@pytest.mark.parametrize("case", ["random", "saturated", "single"])
def test_batchnorm_backward_from_saved_stats_is_the_recomputation(shape: tuple, case: str) -> None:
    c = shape[1]
    x = np.broadcast_to(tensor(case, shape, 8, 4), shape).astype(np.int8)
    dq = tensor("random", shape, 8, 5).astype(np.int8)
    gam = (tensor("random", (c,), 8, 2).astype(np.int8), -6)
    bet = (tensor("random", (c,), 8, 3).astype(np.int8), -5)
    rm, rv = (np.zeros(c, np.int16), -14), (np.ones(c, np.int16), -12)
    saved: dict = {}
    plain = norm.batchnorm_train(x, -3, gam, bet, rm, rv, 1e-5, 0.9, 8)
    kept = norm.batchnorm_train(x, -3, gam, bet, rm, rv, 1e-5, 0.9, 8, saved)
    for a, b in zip(plain, kept):
        assert a[1] == b[1] and np.array_equal(a[0], b[0])
    w = words(shape, 9)
    ref = norm.batchnorm_backward(x, -3, gam, dq, -9, 1e-5, 8, w)
    got = norm.batchnorm_backward(x, -3, gam, dq, -9, 1e-5, 8, w, saved)
    for a, b in zip(ref, got):
        assert a[1] == b[1] and np.array_equal(a[0], b[0])


@pytest.mark.parametrize("shape", [(32, 3, 4, 4), (64, 2, 9), (16, 5, 60)])
@pytest.mark.parametrize("case", ["random", "saturated", "single", "negative", "zeros"])
def test_norm_tables_and_blocks_are_the_element_formula(monkeypatch: pytest.MonkeyPatch, shape: tuple,
                                                        case: str) -> None:
    """An 8-bit BatchNorm input reads xhat (and y) from per-channel tables, in blocks of the batch; the same
    values stored as int16 take the per-element formula. Forward, running statistics and backward (with
    and without the forward's saved statistics) are the same integers at any block size."""
    c = shape[1]
    x8 = np.broadcast_to(tensor(case, shape, 8, 4), shape).astype(np.int8)
    x16 = x8.astype(np.int16)
    assert norm._Xhat(norm._bn_rows(x8), -3, 1e-5).table is not None
    assert norm._Xhat(norm._bn_rows(x16), -3, 1e-5).table is None
    dq = tensor("random", shape, 8, 5).astype(np.int8)
    gam = (tensor("random", (c,), 8, 2).astype(np.int8), -6)
    bet = (tensor("random", (c,), 8, 3).astype(np.int8), -5)
    rm, rv = (np.zeros(c, np.int16), -14), (np.ones(c, np.int16), -12)
    w = words(shape, 9)
    ref_f = norm.batchnorm_train(x16, -3, gam, bet, rm, rv, 1e-5, 0.9, 8)
    # an 8-bit error (inner in int32) and a 16-bit one near its range (inner past int32: int64)
    grads = (dq, (dq.astype(np.int16) * 257).astype(np.int16))
    ref_b = [norm.batchnorm_backward(x16, -3, gam, d, -9, 1e-5, 8, w) for d in grads]
    for block in (norm.BLOCK, 7, 100):
        monkeypatch.setattr(norm, "BLOCK", block)
        saved: dict = {}
        got_f = norm.batchnorm_train(x8, -3, gam, bet, rm, rv, 1e-5, 0.9, 8, saved)
        for x, sv in ((x8, saved), (x8, None), (x16, None)):
            for d, ref in zip(grads, ref_b):
                got_b = norm.batchnorm_backward(x, -3, gam, d, -9, 1e-5, 8, w, sv)
                for a, b in zip(ref, got_b):
                    assert a[1] == b[1] and a[0].dtype == b[0].dtype and np.array_equal(a[0], b[0])
        for a, b in zip(ref_f, got_f):
            assert a[1] == b[1] and a[0].dtype == b[0].dtype and np.array_equal(a[0], b[0])


@pytest.mark.parametrize("shape,axis", [((4, 16, 32), -1), ((6, 5, 8), 1), ((3, 40), -1)])
@pytest.mark.parametrize("case", ["random", "saturated", "single", "zeros"])
def test_layernorm_tables_and_saved_stats_are_the_element_formula(shape: tuple, axis: int, case: str) -> None:
    """A LayerNorm reads its int8 input as it is stored (no int64 copy); forward and backward, with and
    without the forward's saved statistics, are the integers of the int64 copy."""
    norm_shape = shape[axis % len(shape):]
    x8 = np.broadcast_to(tensor(case, shape, 8, 4), shape).astype(np.int8)
    x64 = x8.astype(np.int64)
    assert norm._ln_rows(x8, axis)[0].dtype == np.int8
    dq = tensor("random", shape, 8, 5).astype(np.int8)
    gam = (tensor("random", norm_shape, 8, 2).astype(np.int8), -6)
    bet = (tensor("random", norm_shape, 8, 3).astype(np.int8), -5)
    w = words(shape, 9)
    ref_f = norm.layernorm(x64, -3, gam, bet, axis)
    ref_b = norm.layernorm_backward(x64, -3, gam, dq, -9, axis, 1e-5, 8, w)
    saved: dict = {}
    got_f = norm.layernorm(x8, -3, gam, bet, axis, saved=saved)
    assert got_f[1] == ref_f[1] and np.array_equal(got_f[0], ref_f[0])
    for sv in (saved, None):
        got_b = norm.layernorm_backward(x8, -3, gam, dq, -9, axis, 1e-5, 8, w, sv)
        for a, b in zip(ref_b, got_b):
            assert a[1] == b[1] and np.array_equal(a[0], b[0])


def test_norm_rows_need_no_int64_input() -> None:
    """The statistics read int8 / int16 / int64 storage alike (the widening happens in the multiply)."""
    x = tensor("random", (6, 3, 7), 8, 8)
    outs = [norm._groups_stats(x.astype(dt), -4, 1e-5) for dt in (np.int8, np.int16, np.int64)]
    for o in outs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(outs[0], o))
    assert math.prod(outs[0][0].shape) == x.size


@pytest.mark.parametrize("e", [-8, -5, -3, 0, 2, 5, 7])
@pytest.mark.parametrize("bounds", [(0, 6), (None, 6), (-1e9, None), (0.3, 0.5), (200.0, 300.0),
                                    (-300.0, -200.0), (None, None)])
@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_clip_in_the_storage_dtype_is_the_int64_clip(e: int, bounds: tuple, dtype: type) -> None:
    from rctc.runtime.intref import pointwise

    lim = np.iinfo(dtype).max
    q = np.concatenate([np.arange(-128, 128), [-lim, lim]]).astype(dtype)
    lq, hq = pointwise.clip_bounds(bounds[0], bounds[1], e)
    x = q.astype(np.int64)
    if lq is not None:
        x = np.maximum(x, lq)
    if hq is not None:
        x = np.minimum(x, hq)
    got = pointwise.clip(q, e, *bounds)
    assert got[1] == e and got[0].dtype == dtype and np.array_equal(got[0], x.astype(dtype))
    assert got[0] is not q


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("scale", [2**10, 2**28, 2**40])
@pytest.mark.parametrize("stochastic", [False, True])
def test_requantize_of_an_owned_temporary_is_the_same(dtype: type, scale: int, stochastic: bool) -> None:
    rng = np.random.default_rng(scale)
    acc = rng.integers(-scale, scale, (5, 7)).astype(np.int64)
    if np.iinfo(dtype).max < scale:
        return
    acc = acc.astype(dtype)
    w = words(acc.shape, 4) if stochastic else None
    bias = rng.integers(-100, 100, (1, 7))
    for kw in ({}, {"bias": bias, "bias_exp": -2}):
        ref = core.requantize(acc.copy(), -5, 8, rand=w, **kw)
        got = core.requantize(acc.copy(), -5, 8, rand=w, owned=True, **kw)
        assert ref[1] == got[1] and np.array_equal(ref[0], got[0]) and ref[0].dtype == got[0].dtype


@pytest.mark.parametrize("scale", [1, 3, 2**20])
def test_requantize_draws_lazy_words_only_when_it_rounds(scale: int) -> None:
    """A callable ``rand`` is called once when the shift is not 0 and never when it is 0; the
    result is the one the words themselves give."""
    acc = np.arange(-40, 41, dtype=np.int64).reshape(9, 9) * scale
    w = words(acc.shape, 4)
    calls: list[int] = []

    def draw() -> np.ndarray:
        calls.append(1)
        return w

    got = core.requantize(acc, -5, 8, rand=draw)
    ref = core.requantize(acc, -5, 8, rand=w)
    assert got[1] == ref[1] and np.array_equal(got[0], ref[0])
    assert calls == ([] if ref[1] == -5 else [1])


@pytest.mark.parametrize("e", [-12, -7, -4, -1, 0, 3, 9])
@pytest.mark.parametrize("shape,axis", [((32, 10), -1), ((4, 3, 7, 7), -1), ((5, 9, 2), 1), ((3, 1), -1)])
def test_softmax_parts_of_int8_logits_is_the_element_formula(e: int, shape: tuple, axis: int) -> None:
    """8-bit logits take softmax's exp from a 256-entry table of gaps ``max - x``: the same E, S, R as
    i-exp of ``to_fixed(x - max)`` on the elements (the int16 copy takes the formula), with the
    extreme gap 255 in every case."""
    rng = np.random.default_rng(abs(e) + len(shape))
    q = rng.integers(-128, 128, shape).astype(np.int8)
    q = np.moveaxis(q, axis, -1)
    q[..., 0], q[..., -1] = 127, -128  # every row of two or more spans the whole range
    q = np.ascontiguousarray(np.moveaxis(q, -1, axis))
    fast = expo.softmax_parts(q, e, axis)
    x = q.astype(np.int64)
    ex = expo.iexp(expo.to_fixed(x - x.max(axis=axis, keepdims=True), e))
    assert np.array_equal(fast[0], ex) and fast[0].dtype == np.int64
    for got, ref in zip(fast, expo.softmax_parts(q.astype(np.int16), e, axis)):
        assert got.dtype == ref.dtype and np.array_equal(got, ref)


@pytest.mark.parametrize("headroom", [0, 1, -1])
def test_requantize_int32_accumulator_with_bias_on_both_sides_of_int32(headroom: int) -> None:
    """An int32 accumulator plus its shifted bias is summed in int32 when max|acc| + max|b| fits
    (headroom >= 0 puts it exactly at / under 2^31 - 1), else in int64: the plain int64 result."""
    rng = np.random.default_rng(11 + headroom)
    b = rng.integers(-3000, 3001, 5).astype(np.int16)
    b[0] = 3000
    mb = 3000 << 4
    acc = rng.integers(-(2**31 - 1) + mb, 2**31 - mb, (4, 5)).astype(np.int32)
    acc[0, 0] = 2**31 - 1 - mb - headroom if headroom >= 0 else 2**31 - 1
    w = words(acc.shape, 3)
    exact = acc.astype(np.int64) + (b.astype(np.int64) << 4)
    for rand in (None, w):
        got = core.requantize(acc, -9, 8, bias=b, bias_exp=-5, rand=rand)
        ref = requant_array(exact, -9, 8, rand)
        assert got[1] == ref[1] and np.array_equal(got[0], ref[0])

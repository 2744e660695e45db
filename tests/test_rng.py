"""rctc.rng: Philox4x32-10 against the published Random123 vectors and a scalar reference written
here from the paper, the stream layout, block-range independence, uniformity, argument checks."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from philox_kat import kat_vectors

import rctc.rng as rng_mod
from rctc.rng import philox4x32, random_words, random_words_many, uniform_bits

M32 = 0xFFFFFFFF


def philox_scalar(ctr: tuple[int, ...], key: tuple[int, int]) -> tuple[int, ...]:
    """Philox4x32-10 on Python ints (Salmon et al. SC'11, Random123 philox4x32_R, R = 10)."""
    x0, x1, x2, x3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
        p0, p1 = 0xD2511F53 * x0, 0xCD9E8D57 * x2
        x0, x1, x2, x3 = (p1 >> 32) ^ x1 ^ k0, p1 & M32, (p0 >> 32) ^ x3 ^ k1, p0 & M32
    return x0, x1, x2, x3


@pytest.mark.parametrize("ctr,key,expected", kat_vectors())
def test_known_answer_vectors(ctr, key, expected):
    got = philox4x32(np.array(ctr, dtype=np.uint32), key)
    assert got.dtype == np.uint32 and got.shape == (4,)
    assert tuple(int(v) for v in got) == expected
    assert philox_scalar(ctr, key) == expected  # the test's own reference agrees with Random123


def test_known_answer_vectors_batched():
    kats = kat_vectors()
    for key in {k for _, k, _ in kats}:
        rows = [(c, e) for c, k, e in kats if k == key]
        got = philox4x32(np.array([c for c, _ in rows], dtype=np.uint32), key)
        assert got.tolist() == [list(e) for _, e in rows]


def test_vectorised_over_any_leading_shape():
    rng = np.random.default_rng(7)
    ctr = rng.integers(0, 1 << 32, size=(3, 5, 4), dtype=np.uint64)
    key = (int(rng.integers(0, 1 << 32)), int(rng.integers(0, 1 << 32)))
    got = philox4x32(ctr, key)  # uint64 input holding 32-bit values is accepted
    assert got.shape == (3, 5, 4) and got.dtype == np.uint32
    for idx in np.ndindex(3, 5):
        assert tuple(int(v) for v in got[idx]) == philox_scalar(tuple(int(v) for v in ctr[idx]), key)


def test_stream_layout():
    """Word j is lane j % 4 of philox(counter = (block lo, block hi, step, node), key = seed)."""
    seed, step, node = 0x0123456789ABCDEF, 0xDEADBEEF, 77
    start = (1 << 34) * 4 + 5  # a block index above 2^32: the high counter word is used
    words = random_words(seed, step, node, start, 11)
    key = (seed & M32, seed >> 32)
    for i, w in enumerate(words):
        j = start + i
        block = j // 4
        assert int(w) == philox_scalar((block & M32, block >> 32, step, node), key)[j % 4]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, (1 << 64) - 1),
    step=st.integers(0, M32),
    node=st.integers(0, M32),
    start=st.one_of(st.integers(0, 64), st.integers(0, (1 << 64) - 200)),
    count=st.integers(0, 120),
    cuts=st.lists(st.integers(0, 120), max_size=6),
)
def test_any_split_gives_the_same_words(seed, step, node, start, count, cuts):
    whole = random_words(seed, step, node, start, count)
    assert whole.shape == (count,) and whole.dtype == np.uint32
    edges = [0, *sorted(c for c in cuts if c <= count), count]
    parts = [random_words(seed, step, node, start + a, b - a) for a, b in zip(edges[:-1], edges[1:])]
    assert np.array_equal(np.concatenate(parts), whole)
    # drawing the pieces in reverse order changes nothing either (no hidden state)
    rev = [random_words(seed, step, node, start + a, b - a) for a, b in reversed(list(zip(edges[:-1], edges[1:])))]
    assert np.array_equal(np.concatenate(rev[::-1]), whole)


def test_long_ranges_across_work_chunks():
    """Ranges longer than the implementation's work chunk: the same words as the raw bijection
    on the stated counters, and as the range drawn in two pieces cut at an odd place."""
    seed, step, node, start, count = 0xFEEDFACECAFEBEEF, 5, 6, 4 * 40000 + 1, 4 * 70000 + 5
    words = random_words(seed, step, node, start, count)
    blocks = np.arange(start // 4, (start + count - 1) // 4 + 1, dtype=np.uint64)
    ctr = np.stack(
        [blocks & np.uint64(M32), blocks >> np.uint64(32), np.full_like(blocks, step), np.full_like(blocks, node)], -1
    )
    raw = philox4x32(ctr, (seed & M32, seed >> 32)).reshape(-1)
    assert np.array_equal(words, raw[1 : 1 + count])
    cut = 65537 * 3
    pieces = [random_words(seed, step, node, start, cut), random_words(seed, step, node, start + cut, count - cut)]
    assert np.array_equal(np.concatenate(pieces), words)


def test_stream_end_is_reachable():
    tail = random_words(5, 6, 7, (1 << 64) - 3, 3)
    block = ((1 << 64) - 1) // 4
    assert tail.tolist() == list(philox_scalar((block & M32, block >> 32, 6, 7), (5, 0))[1:])


def test_streams_differ_by_seed_step_and_node():
    base = random_words(1, 2, 3, 0, 64)
    for args in [(2, 2, 3), (1 << 32 | 1, 2, 3), (1, 3, 3), (1, 2, 4)]:
        other = random_words(*args, 0, 64)
        assert np.count_nonzero(other == base) <= 1


def _chi2_bounds(dof: int, z: float = 4.753) -> tuple[float, float]:
    """Two-sided bounds of a chi-square with ``dof`` degrees of freedom at about 1e-6 each side
    (Wilson-Hilferty approximation)."""
    c = 2.0 / (9.0 * dof)
    return dof * (1 - c - z * math.sqrt(c)) ** 3, dof * (1 - c + z * math.sqrt(c)) ** 3


def _chi2(counts: np.ndarray) -> float:
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2).sum() / expected)


def test_uniformity_chi_square():
    words = random_words(20260101, 3, 9, 0, 1 << 18)
    lo, hi = _chi2_bounds(255)
    for k in (8,):
        top = uniform_bits(words, k)
        assert lo < _chi2(np.bincount(top, minlength=256)) < hi
    low_byte = (words & np.uint32(0xFF)).astype(np.int64)  # the low bits are uniform too
    assert lo < _chi2(np.bincount(low_byte, minlength=256)) < hi
    for lane in range(4):  # and so is each lane of the block
        lane_top = uniform_bits(words[lane::4], 6)
        lo6, hi6 = _chi2_bounds(63)
        assert lo6 < _chi2(np.bincount(lane_top, minlength=64)) < hi6


def test_chi_square_check_has_power():
    """The same check rejects streams that are broken in the ways a layout bug would break them:
    a Weyl sequence (too regular: chi-square far below its range) and a stream whose top bit is
    stuck (half the bins empty: far above)."""
    lo, hi = _chi2_bounds(255)
    n = 1 << 18
    weyl = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B9)).astype(np.uint32)
    assert _chi2(np.bincount(uniform_bits(weyl, 8), minlength=256)) < lo
    stuck = random_words(20260101, 3, 9, 0, n) & np.uint32(0x7FFFFFFF)
    assert _chi2(np.bincount(uniform_bits(stuck, 8), minlength=256)) > hi


def test_threads_drawing_blocks_in_any_order_agree():
    """Workers that each draw their own block range, finishing in any order, fill the same words."""
    seed, step, node, start, count = 77, 12, 3, 6, 50001
    whole = random_words(seed, step, node, start, count)
    edges = np.linspace(0, count, 9).astype(int)
    jobs = list(zip(edges[:-1], edges[1:]))[::-1]  # submitted last range first
    out = np.zeros(count, dtype=np.uint32)

    def fill(job: tuple[int, int]) -> None:
        a, b = job
        out[a:b] = random_words(seed, step, node, start + int(a), int(b - a))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fill, jobs))
    assert np.array_equal(out, whole)


def test_bits_balanced_and_neighbours_independent():
    n = 1 << 18
    words = random_words(99, 0, 1, 0, n)
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & np.uint32(1)
    ones = bits.sum(axis=0)
    assert np.all(np.abs(ones - n / 2) < 5.5 * math.sqrt(n / 4))  # every bit position is fair
    # successive words and the same position of the next node's stream: joint top-4 bits uniform
    lo, hi = _chi2_bounds(255)
    t = uniform_bits(words, 4).astype(np.int64)
    assert lo < _chi2(np.bincount(t[:-1] * 16 + t[1:], minlength=256)) < hi
    t2 = uniform_bits(random_words(99, 0, 2, 0, n), 4).astype(np.int64)
    assert lo < _chi2(np.bincount(t * 16 + t2, minlength=256)) < hi


@pytest.mark.parametrize("k", [1, 7, 16, 24, 31, 32])
def test_uniform_bits(k):
    words = random_words(3, 1, 4, 2, 4096)
    got = uniform_bits(words, k)
    assert got.dtype == np.uint32 and got.shape == words.shape
    assert [int(g) for g in got[:64]] == [int(w) >> (32 - k) for w in words[:64]]
    assert int(got.max()) < (1 << k)
    assert np.array_equal(words, random_words(3, 1, 4, 2, 4096))  # input untouched


def test_stochastic_shift_with_uniform_bits_is_unbiased():
    """The rounding docs/rng.md states: ``(x + uniform_bits(w, s)) >> s`` equals
    ``floor(x / 2^s + U / 2^s)`` exactly (checked in float64, exact here) and is unbiased."""
    s, n = 5, 1 << 16
    xs = np.array([-1000, -33, -1, 0, 1, 17, 31, 1023], dtype=np.int64)
    for i, x in enumerate(xs):
        u = uniform_bits(random_words(8, 1, i, 0, n), s).astype(np.int64)
        q = (x + u) >> s
        assert np.array_equal(q, np.floor(x / 2.0**s + u / 2.0**s).astype(np.int64))
        sd = 0.5 / math.sqrt(n)  # a Bernoulli's standard deviation is at most 1/2
        assert abs(q.mean() - x / 2.0**s) < 6 * sd


@pytest.mark.parametrize(
    "args",
    [
        (-1, 0, 0, 0, 1),
        (1 << 64, 0, 0, 0, 1),
        (0, -1, 0, 0, 1),
        (0, 1 << 32, 0, 0, 1),
        (0, 0, -1, 0, 1),
        (0, 0, 1 << 32, 0, 1),
        (0, 0, 0, -1, 1),
        (0, 0, 0, 1 << 64, 0),
        (0, 0, 0, 0, -1),
        (0, 0, 0, (1 << 64) - 2, 3),
    ],
)
def test_random_words_refuses_bad_arguments(args):
    with pytest.raises(ValueError):
        random_words(*args)


def test_refuses_non_integers():
    with pytest.raises(TypeError):
        random_words(1.5, 0, 0, 0, 1)
    with pytest.raises(TypeError):
        random_words(True, 0, 0, 0, 1)


@pytest.mark.parametrize(
    "counters,key",
    [
        (np.zeros(3, np.uint32), (0, 0)),  # last axis is not 4
        (np.zeros((2, 4), np.float64), (0, 0)),  # not integers
        (np.array([0, 0, 0, 1 << 32], np.int64), (0, 0)),  # a word above 32 bits
        (np.array([0, 0, -1, 0], np.int64), (0, 0)),  # negative
        (np.zeros(4, np.uint32), (0, 1 << 32)),
        (np.zeros(4, np.uint32), (-1, 0)),
        (np.zeros(4, np.uint32), (0,)),
    ],
)
def test_philox_refuses_bad_arguments(counters, key):
    with pytest.raises(ValueError):
        philox4x32(counters, key)


@pytest.mark.parametrize("k", [0, 33, -1])
def test_uniform_bits_refuses_bad_k(k):
    with pytest.raises(ValueError):
        uniform_bits(np.zeros(4, np.uint32), k)


def test_uniform_bits_refuses_other_dtypes():
    with pytest.raises(ValueError):
        uniform_bits(np.zeros(4, np.int64), 8)


# --- the two implementations of the stream: randomgen's C Philox (large draws) and the numpy rounds


def _both(seed: int, step: int, node: int, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    return (rng_mod._words_randomgen(seed, step, node, start, count),
            rng_mod._words_numpy(seed, step, node, start, count))


@settings(max_examples=80, deadline=None)
@given(
    seed=st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, (1 << 64) - 1, 1 << 32, M32])),
    step=st.one_of(st.integers(0, M32), st.sampled_from([0, M32])),
    node=st.one_of(st.integers(0, M32), st.sampled_from([0, M32])),
    start=st.one_of(st.integers(0, 64), st.integers(0, (1 << 64) - 600),
                    st.integers((1 << 34) - 300, (1 << 34) + 8)),  # block lo wraps at word 2^34
    count=st.integers(0, 520),
)
def test_randomgen_path_equals_the_numpy_rounds(seed, step, node, start, count):
    fast, spec = _both(seed, step, node, start, count)
    assert fast.dtype == np.uint32 and fast.shape == (count,)
    assert np.array_equal(fast, spec)


RAW_MAX = rng_mod._RandomgenStream.RAW_MAX


@pytest.mark.parametrize("start", [0, 1, 2, 3, (1 << 64) - (4 << 12) - 3, (1 << 64) - RAW_MAX - 6, (1 << 34) - 5000])
def test_randomgen_path_at_the_stream_edges(start):
    """Counter 0 (step 0, node 0, block 0: the generator starts at 2^128 - 1), the stream's last
    word, a range across the block's 32-bit wrap, every start offset; lengths on both sides of
    the raw-output / ``Generator.integers`` switch."""
    count = min(RAW_MAX + 7, (1 << 64) - start)
    fast, spec = _both(0, 0, 0, start, count)
    assert np.array_equal(fast, spec)
    fast, spec = _both((1 << 64) - 1, M32, M32, start, count)
    assert np.array_equal(fast, spec)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, (1 << 64) - 1),
       draws=st.lists(st.tuples(st.integers(0, M32), st.integers(0, M32), st.integers(0, (1 << 64) - 600),
                                st.integers(0, 520)), min_size=1, max_size=12))
def test_one_randomgen_stream_repositioned_per_draw_equals_the_numpy_rounds(seed, draws):
    """A stream keeps no trace of the draw before (buffered words, counter) in the next one."""
    stream = rng_mod._RandomgenStream(seed)
    for step, node, start, count in draws:
        assert np.array_equal(stream.words(step, node, start, count),
                              rng_mod._words_numpy(seed, step, node, start, count))


def test_kept_generators_give_fresh_words_across_seeds_and_threads():
    """random_words reuses a thread's generator per seed (more seeds than it keeps, a long draw on
    Generator.integers between short ones): each draw equals the numpy rounds, on two threads."""
    seeds = list(range(1, rng_mod._Streams.KEEP + 3))
    draws = [(seed, 3, 11, start, count) for seed in seeds for start, count in
             ((5, 9), (0, RAW_MAX + 5), (2, 300))] * 2

    def check(order: list[tuple[int, int, int, int, int]]) -> bool:
        return all(np.array_equal(random_words(*d), rng_mod._words_numpy(*d)) for d in order)

    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(check, [draws, draws[::-1]]))


def test_random_words_agrees_with_the_scalar_reference_at_every_size():
    seed, step, node = 0x0123456789ABCDEF, 9, 4
    key = (seed & M32, seed >> 32)
    assert random_words(seed, step, node, 6, 0).shape == (0,)
    for count in (1, 5, RAW_MAX - 7, RAW_MAX - 6, RAW_MAX + 3):
        words = random_words(seed, step, node, 6, count)
        assert words.dtype == np.uint32 and words.shape == (count,)
        for j in (0, count // 2, count - 1):
            blk = (6 + j) // 4
            assert int(words[j]) == philox_scalar((blk & M32, blk >> 32, step, node), key)[(6 + j) % 4]


@pytest.mark.parametrize("tiny", [3, rng_mod.BATCH_MIN])  # one by one on randomgen / batched on numpy
def test_random_words_many_mixes_tiny_and_large_requests(tiny):
    seed, step = 77, 3
    reqs = [(5 + i % 3, 7 * i + (i & 3), 1 + 37 * i % rng_mod.BATCH_MAX) for i in range(tiny)]
    reqs += [(6, 3, rng_mod.BATCH_MAX + 1), (7, 1 << 40, 0), (5, 10, 4000), (8, 2, RAW_MAX + 9), (9, 0, 0)]
    got = random_words_many(seed, step, reqs)
    assert len(got) == len(reqs)
    for (nid, start, count), words in zip(reqs, got):
        assert words.dtype == np.uint32
        assert np.array_equal(words, rng_mod._words_numpy(seed, step, nid, start, count))

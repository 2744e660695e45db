"""kernels/random_words_mt.c: a node's Philox words split over threads equal rctc.rng's stream
(the numpy reference) for every thread count, start offset and length around the split points."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from rctc.native.kernels import Kernels
from rctc.rng import random_words


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(("start", "count"), [(0, 5), (0, 65535), (0, 65536), (3, 100001), (2**40 + 1, 70002),
                                              (5, 2 * 2**20 + 3), (0, 3 * 2**20)])
def test_threaded_words_equal_the_numpy_stream(kernels: Kernels, threads: int, start: int, count: int) -> None:
    fn = kernels.lib.rctc_random_words_mt
    fn.restype = None
    fn.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64,
                   ctypes.c_size_t, ctypes.c_void_p]
    out = np.zeros(count + 1, np.uint32)
    out[-1] = 0xDEADBEEF
    fn(threads, 2**33 + 7, 5, 41, start, count, out.ctypes.data)
    assert np.array_equal(out[:-1], random_words(2**33 + 7, 5, 41, start, count))
    assert out[-1] == 0xDEADBEEF  # nothing written past the range


def _words(kernels: Kernels, name: str, seed: int, step: int, node: int, start: int, count: int) -> np.ndarray:
    fn = getattr(kernels.lib, name)
    fn.restype = None
    fn.argtypes = [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_size_t,
                   ctypes.c_void_p]
    out = np.zeros(count + 2, np.uint32)
    out[0] = out[-1] = 0xDEADBEEF
    fn(seed, step, node, start, count, out[1:].ctypes.data)
    assert out[0] == 0xDEADBEEF and out[-1] == 0xDEADBEEF  # nothing written outside the range
    return out[1:-1]


@pytest.mark.parametrize("variant", ["avx2", "avx512vnni"])
def test_simd_words_equal_the_portable_loop(kernels: Kernels, variant: str) -> None:
    """x86/philox_avx2.c and philox_avx512.c against rctc_random_words over a grid of starts
    (every lane of a block, past 2^32 and 2^64 - 8 blocks: the 64-bit counter's carry and wrap)
    and lengths around their 32 / 64-word steps, odd ones included; and rctc_random_words_fast."""
    if not kernels.has_variant(variant):
        pytest.skip(f"this CPU has no {variant}")
    name = {"avx2": "rctc_random_words_avx2", "avx512vnni": "rctc_random_words_avx512"}[variant]
    rng = np.random.default_rng(7)
    starts = [0, 1, 2, 3, 5, 4 * (2**32 - 3) + 1, 2**64 - 4 * 20 - 3]
    counts = [0, 1, 3, 4, 31, 32, 33, 63, 64, 65, 127, 129, 1000, 4099]
    for start in starts:
        for count in counts:
            if start + count > 2**64:
                continue
            seed, step, node = (int(v) for v in rng.integers(0, 2**32, 3))
            seed = seed << 31 | 0x5bd1e995
            want = _words(kernels, "rctc_random_words", seed, step, node, start, count)
            assert np.array_equal(_words(kernels, name, seed, step, node, start, count), want), (start, count)
    big = random_words(2**33 + 7, 5, 41, 6, 50001)
    assert np.array_equal(_words(kernels, name, 2**33 + 7, 5, 41, 6, 50001), big)
    assert np.array_equal(_words(kernels, "rctc_random_words_fast", 2**33 + 7, 5, 41, 6, 50001), big)

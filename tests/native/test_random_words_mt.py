"""kernels/random_words_mt.c: a node's Philox words split over threads equal rctc.rng's stream
(the numpy reference) for every thread count, start offset and length around the split points."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from rctc.native.kernels import Kernels
from rctc.rng import random_words


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(("start", "count"), [(0, 5), (0, 65535), (0, 65536), (3, 100001), (2**40 + 1, 70002)])
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

"""native/csrc/support/philox.c: the C Philox4x32-10 and word stream equal rctc.rng bit for bit,
and the published Random123 vectors; the files build warning-free for the host and Cortex-M4."""

from __future__ import annotations

import ctypes
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from cshared import CSRC, arm_compile_objects, build_shared, compiler, undefined_symbols
from philox_kat import kat_vectors

from rctc.rng import philox4x32, random_words, uniform_bits

PHILOX_C = CSRC / "support" / "philox.c"
U32P = ctypes.POINTER(ctypes.c_uint32)

SHIM = """
#include "rctc_rng.h"
uint32_t shim_uniform_bits(uint32_t word, unsigned k) { return rctc_uniform_bits(word, k); }
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if compiler() is None:
        pytest.skip("no C compiler (set CC or install cc): the C RNG cannot be built")
    out = tmp_path_factory.mktemp("rng_c")
    shim = out / "shim.c"
    shim.write_text(SHIM)
    so = build_shared([PHILOX_C, shim], out, "rctc_rng")
    so.rctc_philox4x32.argtypes = [U32P, U32P, U32P]
    so.rctc_philox4x32.restype = None
    so.rctc_random_words.argtypes = [
        ctypes.c_uint64,
        ctypes.c_uint32,
        ctypes.c_uint32,
        ctypes.c_uint64,
        ctypes.c_size_t,
        U32P,
    ]
    so.rctc_random_words.restype = None
    so.shim_uniform_bits.argtypes = [ctypes.c_uint32, ctypes.c_uint]
    so.shim_uniform_bits.restype = ctypes.c_uint32
    return so


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(U32P)


def c_philox(lib, ctr, key) -> np.ndarray:
    c = np.ascontiguousarray(ctr, dtype=np.uint32)
    k = np.ascontiguousarray(key, dtype=np.uint32)
    out = np.zeros(4, np.uint32)
    lib.rctc_philox4x32(_ptr(c), _ptr(k), _ptr(out))
    return out


def c_words(lib, seed, step, node, start, count) -> np.ndarray:
    # one guard word past the end: the C side must not write beyond count
    out = np.full(count + 1, 0xA5A5A5A5, dtype=np.uint32)
    lib.rctc_random_words(seed, step, node, start, count, _ptr(out))
    assert out[count] == 0xA5A5A5A5, "rctc_random_words wrote past count"
    return out[:count]


@pytest.mark.parametrize("ctr,key,expected", kat_vectors())
def test_c_known_answer_vectors(lib, ctr, key, expected):
    assert tuple(int(v) for v in c_philox(lib, ctr, key)) == expected


def test_c_output_may_alias_counter(lib):
    ctr, key, expected = kat_vectors()[2]
    buf = np.array(ctr, dtype=np.uint32)
    lib.rctc_philox4x32(_ptr(buf), _ptr(np.array(key, np.uint32)), _ptr(buf))
    assert tuple(int(v) for v in buf) == expected


def test_c_equals_numpy_on_many_counters_and_keys(lib):
    rng = np.random.default_rng(2026)
    edge = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
    ctrs = rng.integers(0, 1 << 32, size=(1500, 4), dtype=np.uint64).astype(np.uint32)
    ctrs[:36] = np.array([[a, b, a, b] for a in edge for b in edge], dtype=np.uint32)
    keys = [(int(a), int(b)) for a, b in rng.integers(0, 1 << 32, size=(12, 2))]
    keys += [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (1, 0), (0, 1)]
    for key in keys:
        ref = philox4x32(ctrs, key)
        got = np.stack([c_philox(lib, c, key) for c in ctrs[:: max(1, len(keys) // 4)]])
        assert np.array_equal(got, ref[:: max(1, len(keys) // 4)])


@pytest.mark.parametrize(
    "seed,step,node,start,count",
    [
        (0, 0, 0, 0, 0),
        (0, 0, 0, 0, 1),
        (1, 2, 3, 1, 2),  # inside one block
        (1, 2, 3, 3, 2),  # across a block edge
        (7, 0, 0, 2, 9),
        (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0, 33),
        (0x0123456789ABCDEF, 12345, 678, (1 << 36) + 3, 1001),  # block above 2^32
        (42, 1, 2, (1 << 64) - 7, 7),  # the stream's last words
        (2026, 17, 4, 5, 20000),
        (9, 8, 7, 3, 4 * 40000 + 11),  # longer than the numpy side's work chunk
    ],
)
def test_c_stream_equals_numpy(lib, seed, step, node, start, count):
    assert np.array_equal(c_words(lib, seed, step, node, start, count), random_words(seed, step, node, start, count))


def test_c_stream_equals_numpy_random_ranges(lib):
    rng = np.random.default_rng(5)
    for _ in range(200):
        seed = int(rng.integers(0, 1 << 63)) * 2 + int(rng.integers(0, 2))
        step, node = (int(v) for v in rng.integers(0, 1 << 32, size=2))
        start = int(rng.integers(0, 1 << 62)) if rng.random() < 0.5 else int(rng.integers(0, 40))
        count = int(rng.integers(0, 70))
        assert np.array_equal(
            c_words(lib, seed, step, node, start, count), random_words(seed, step, node, start, count)
        )


def test_c_threads_filling_disjoint_ranges_agree(lib):
    """C calls on several threads (ctypes drops the GIL), each writing its own range of one buffer,
    in reverse order: the same words as one numpy call."""
    seed, step, node, start, count = 0xABCDEF, 40, 2, 1, 4 * 9000 + 3
    out = np.zeros(count, dtype=np.uint32)
    edges = [0, 5, 4 * 1000 + 2, 17001, 30000, count]

    def fill(job: tuple[int, int]) -> None:
        a, b = job
        lib.rctc_random_words(seed, step, node, start + a, b - a, _ptr(out[a:]))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fill, list(zip(edges[:-1], edges[1:]))[::-1]))
    assert np.array_equal(out, random_words(seed, step, node, start, count))


def test_c_uniform_bits_equals_numpy(lib):
    words = random_words(11, 2, 3, 0, 256)
    for k in range(1, 33):
        ref = uniform_bits(words, k)
        assert [lib.shim_uniform_bits(int(w), k) for w in words[:32]] == [int(r) for r in ref[:32]]
    assert lib.shim_uniform_bits(0xFFFFFFFF, 0) == 0  # total in C (Python refuses k = 0)


def test_builds_for_cortex_m4_without_libc(tmp_path):
    objs = arm_compile_objects([PHILOX_C], tmp_path)
    if objs is None:
        pytest.skip("arm-none-eabi-gcc is not installed (apt-get install gcc-arm-none-eabi)")
    assert undefined_symbols(objs[0]) == []  # no libc, no compiler-runtime helper

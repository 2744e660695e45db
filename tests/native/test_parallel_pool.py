"""kernels/parallel.c's persistent pool: regions from several host threads at once (one gets the
pool, the others run on their caller), the pool grown and shrunk between calls, and a forked
child (which has none of the parent's workers) all give the numpy reference's words."""

from __future__ import annotations

import ctypes
import os
import threading
import time

import numpy as np

from rctc.native.kernels import Kernels
from rctc.rng import random_words

COUNT = 3 * 2**18 + 5  # above the per-thread floor: the region really is split


def _words_fn(kernels: Kernels):
    fn = kernels.lib.rctc_random_words_mt
    fn.restype = None
    fn.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64,
                   ctypes.c_size_t, ctypes.c_void_p]
    return fn


def test_regions_from_several_host_threads_at_once(kernels: Kernels) -> None:
    fn = _words_fn(kernels)
    want = {node: random_words(11, 3, node, 0, COUNT) for node in range(4)}
    bad: list[tuple[int, int]] = []

    def run(node: int) -> None:
        out = np.empty(COUNT, np.uint32)
        for rep in range(15):
            fn(2, 11, 3, node, 0, COUNT, out.ctypes.data)
            if not np.array_equal(out, want[node]):
                bad.append((node, rep))

    threads = [threading.Thread(target=run, args=(node,)) for node in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a region never finished"
    assert bad == []


def test_thread_counts_up_and_down_between_calls(kernels: Kernels) -> None:
    fn = _words_fn(kernels)
    want = random_words(2**40 + 3, 9, 17, 7, COUNT)
    out = np.empty(COUNT, np.uint32)
    for threads in (8, 1, 2, 5, 3, 8, 2):
        out[:] = 0
        fn(threads, 2**40 + 3, 9, 17, 7, COUNT, out.ctypes.data)
        assert np.array_equal(out, want), threads


def test_a_forked_child_starts_its_own_workers(kernels: Kernels) -> None:
    fn = _words_fn(kernels)
    want = random_words(5, 1, 2, 0, COUNT)
    out = np.empty(COUNT, np.uint32)
    fn(2, 5, 1, 2, 0, COUNT, out.ctypes.data)  # the parent's pool exists before the fork
    assert np.array_equal(out, want)
    pid = os.fork()
    if pid == 0:  # the child: a region on 2 threads must neither hang nor differ
        code = 1
        try:
            child = np.empty(COUNT, np.uint32)
            fn(2, 5, 1, 2, 0, COUNT, child.ctypes.data)
            code = 0 if np.array_equal(child, want) else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child's region hung")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_threads_for_elements_is_one_per_share_capped_by_the_request(kernels: Kernels) -> None:
    """rctc_threads_for_elements (parallel.c), the one split rule of the element-wise kernels:
    ``min(nthreads, max(1, n // per_thread))``, 1 for a request of fewer than one thread, and no
    RCTC_MAX_THREADS cap (a plain restatement on a grid around each boundary)."""
    fn = kernels.lib.rctc_threads_for_elements
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t]
    per = 1 << 17
    for nthreads in (-1, 0, 1, 2, 3, 64, 100):
        for n in (0, 1, per - 1, per, 2 * per - 1, 2 * per, 3 * per + 5, 100 * per, 200 * per):
            want = 1 if nthreads < 1 else min(nthreads, max(1, n // per))
            assert fn(nthreads, n, per) == want, (nthreads, n)

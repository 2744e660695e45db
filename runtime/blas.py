"""Accumulating GEMM on numpy views through the loaded CBLAS: ``out = a @ b`` or ``out += a @ b``.

``np.matmul`` reads a view whose rows are not packed (a kernel tap of a convolution is a shifted
window ``x[:, off:off+L]`` of a wider array) without a copy, but it cannot add into its output:
a sum of products needs a temporary and an add pass per term. CBLAS ``?gemm`` with ``beta = 1``
accumulates in place, which lets a stride-1 convolution run as one GEMM per kernel tap straight
off the padded input, with no im2col columns and no add passes
(:mod:`rctc.runtime.kernels._conv_taps`).

The library is the first loaded OpenBLAS (in ``/proc/self/maps`` path order) whose symbols pass
the check below; the symbols of
numpy's own wheels (``scipy_cblas_sgemm64_``, 64-bit integers), of an ``openblas64_`` build and of
a plain LP64 ``cblas_sgemm`` are recognised. A first call checks the binding against
``np.matmul`` on small integer matrices. Where nothing is found or the check fails (another BLAS
vendor, another platform), :func:`gemm` does the same with ``np.matmul`` (one copy more):
callers never need to know which path ran. ``RCTC_NO_CBLAS=1`` forces that fallback.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

#: Products below this many multiply-accumulates run on one BLAS thread: splitting a small GEMM
#: over threads costs more than it saves, and on a busy 2-core machine the caller then waits
#: for a descheduled worker.
SMALL_GEMM_MACS = 1 << 21
#: Up to this many OpenBLAS already runs a GEMM on one thread by itself (its interface uses
#: ``MNK / (65536 * GEMM_MULTITHREAD_THRESHOLD)`` threads, default threshold 4; checked with
#: numpy's OpenBLAS 0.3.31): the thread-count toggle (three ctypes calls) is skipped there.
OPENBLAS_ONE_THREAD_MACS = 1 << 18

_SYMBOLS = (  # (gemm name template, integer type)
    ("scipy_cblas_{t}gemm64_", ctypes.c_int64),
    ("cblas_{t}gemm64_", ctypes.c_int64),
    ("scipy_cblas_{t}gemm", ctypes.c_int),
    ("cblas_{t}gemm", ctypes.c_int),
)


class _Cblas:
    """ctypes bindings of ``sgemm``/``dgemm`` of one loaded library."""

    def __init__(self, lib: ctypes.CDLL, template: str, itype: Any) -> None:
        self.int_max = 2**63 - 1 if itype is ctypes.c_int64 else 2**31 - 1
        self.fns: dict[np.dtype, Any] = {}
        for t, dtype, ctype in (("s", np.float32, ctypes.c_float), ("d", np.float64, ctypes.c_double)):
            fn = getattr(lib, template.format(t=t))
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, itype, itype, itype, ctype,
                           ctypes.c_void_p, itype, ctypes.c_void_p, itype, ctype, ctypes.c_void_p, itype]
            fn.restype = None
            self.fns[np.dtype(dtype)] = fn


_CBLAS: _Cblas | None = None
_PROBED = False


def _loaded_openblas_paths() -> list[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return sorted({ln.split()[-1] for ln in fh if "openblas" in ln.lower() and "/" in ln})
    except OSError:
        return []


def cblas() -> _Cblas | None:
    """The bindings of numpy's loaded OpenBLAS, or None (probed once; checked on first use)."""
    global _CBLAS, _PROBED
    if _PROBED:
        return _CBLAS
    _PROBED = True
    if os.environ.get("RCTC_NO_CBLAS"):
        return None
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure numpy's BLAS is loaded
    for path in _loaded_openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for template, itype in _SYMBOLS:
            if hasattr(lib, template.format(t="s")) and hasattr(lib, template.format(t="d")):
                candidate = _Cblas(lib, template, itype)
                if _self_check(candidate):
                    _CBLAS = candidate
                    return _CBLAS
                break
    return None


def _self_check(lib: _Cblas) -> bool:
    """The binding computes what ``np.matmul`` does (strided views, transposes, accumulation)."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a = rng.integers(-9, 10, (5, 7)).astype(dtype)
        wide = rng.integers(-9, 10, (6, 13)).astype(dtype)
        b = wide[:, 2:9]  # rows not packed: ld 13
        out = np.ones((5, 6), dtype)
        _cblas_gemm(a, b.T, out, True, lib)
        if not np.array_equal(out, 1 + a @ b.T):
            return False
    return True


def _operand(a: np.ndarray) -> tuple[int, int] | None:
    """(transpose flag, leading dimension) of a 2-D view CBLAS can read as it is, else None."""
    item = a.itemsize
    rows, cols = a.shape
    s0 = a.strides[0] if rows > 1 else cols * item  # the stride of a length-1 axis is irrelevant
    s1 = a.strides[1] if cols > 1 else item
    if s1 == item and s0 % item == 0 and s0 // item >= cols:
        return _NO_TRANS, s0 // item
    if s0 == item and s1 % item == 0 and s1 // item >= rows:
        return _TRANS, s1 // item
    return None


def _cblas_gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool, lib: _Cblas) -> bool:
    """``out (+)= a @ b`` by one CBLAS call; False (nothing done) if an operand's layout does not fit."""
    fn = lib.fns.get(out.dtype)
    if fn is None or a.dtype != out.dtype or b.dtype != out.dtype:
        return False
    pa, pb, pc = _operand(a), _operand(b), _operand(out)
    if pa is None or pb is None or pc is None or pc[0] != _NO_TRANS:
        return False
    if max(*a.shape, *b.shape, pa[1], pb[1], pc[1]) > lib.int_max:  # would wrap in a 32-bit BLAS int
        return False
    m, k = a.shape
    fn(_ROW_MAJOR, pa[0], pb[0], m, b.shape[1], k, 1.0, a.ctypes.data, pa[1], b.ctypes.data, pb[1],
       1.0 if accumulate else 0.0, out.ctypes.data, pc[1])
    return True


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> np.ndarray:
    """``out = a @ b`` (``accumulate=False``) or ``out += a @ b`` for 2-D float views; returns ``out``.

    ``a`` (M, K), ``b`` (K, N) and ``out`` (M, N) share one float dtype (float32 or float64). Any
    operand may be a view whose rows are not packed or a transposed view; an ``out`` that
    overlaps an operand takes the numpy path. Without a usable CBLAS (or for layouts it cannot read) this is
    ``np.matmul`` plus an add: the same result for exact (integer-valued) data.
    """
    if a.ndim != 2 or b.ndim != 2 or out.shape != (a.shape[0], b.shape[1]) or a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm: shapes {a.shape} @ {b.shape} -> {out.shape} do not match")
    if 0 in a.shape or 0 in b.shape:
        if not accumulate:
            out[...] = 0
        return out
    if not out.flags.writeable:
        raise ValueError("gemm: the output array is read-only")
    lib = cblas()
    if (lib is not None and not np.may_share_memory(out, a) and not np.may_share_memory(out, b)
            and _cblas_gemm(a, b, out, accumulate, lib)):
        return out
    if accumulate:
        out += np.matmul(a, b)
    else:
        np.matmul(a, b, out=out)
    return out


_BLAS_POOLS: list[Any] | None = None


def blas_pools() -> list[Any]:
    """threadpoolctl's controllers of the loaded BLAS libraries (found once, after numpy loaded)."""
    global _BLAS_POOLS
    if _BLAS_POOLS is None:
        _BLAS_POOLS = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _BLAS_POOLS


@contextmanager
def blas_threads_for(macs: int) -> Iterator[None]:
    """Run the enclosed GEMMs on one BLAS thread when they total fewer than :data:`SMALL_GEMM_MACS`
    multiply-accumulates, through threadpoolctl, restoring each library's count on exit (below
    :data:`OPENBLAS_ONE_THREAD_MACS` OpenBLAS needs no telling). The limit holds only inside the
    ``with`` block: nothing outside the scope sees another thread count."""
    if macs <= OPENBLAS_ONE_THREAD_MACS or macs >= SMALL_GEMM_MACS:
        yield
        return
    pools = [(p, p.get_num_threads()) for p in blas_pools()]
    pools = [(p, n) for p, n in pools if n is not None and n > 1]
    for p, _ in pools:
        p.set_num_threads(1)
    try:
        yield
    finally:
        for p, n in pools:
            p.set_num_threads(n)

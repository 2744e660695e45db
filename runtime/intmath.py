"""Exact integer matrix products computed through floating-point BLAS.

numpy's integer ``matmul`` does not use BLAS and is two orders of magnitude
slower than a float32 GEMM.  :func:`int_matmul` computes the *exact* integer
product of two integer arrays by running float32 (or float64) BLAS GEMMs on
pieces of the contraction dimension that are small enough for every partial sum
to be an exactly representable integer, and adding the pieces up exactly.

The quantisation helpers of the dynamic fixed point format (value = q * 2^e)
live in :mod:`rctc.fixedpoint`; they are re-exported here so that kernels
can take all of the integer arithmetic core from one module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rctc.fixedpoint import (
    choose_exponent,
    dequantize,
    int_dtype_for_bits,
    qmax_for_bits,
    quantize,
    requantize,
    shift_left,
    shift_right_round,
)
from rctc.runtime.blas import blas_threads_for

__all__ = [
    "choose_exponent",
    "dequantize",
    "int_dtype_for_bits",
    "abs_bound",
    "blas_matmul",
    "exact_float_matmul",
    "int_matmul",
    "matmul_plan",
    "pixel_ranges",
    "qmax_for_bits",
    "quantize",
    "requantize",
    "shift_left",
    "shift_right_round",
]

#: Largest integer magnitude up to which *every* integer is exact in float32 / float64.
F32_EXACT = 2**24
F64_EXACT = 2**53
_INT64_MAX = 2**63 - 1

# Rough cost model (nanoseconds on a 2-core AVX2 machine with OpenBLAS; only the
# ratios matter).  Per multiply-accumulate of a float32 / float64 BLAS GEMM and of
# numpy's non-BLAS int64 matmul; per output element and per K-chunk (accumulation
# pass plus the efficiency lost by a thin GEMM); per numpy call.
_NS_MAC_F32 = 0.017
_NS_MAC_F64 = 0.034
_NS_MAC_I64 = 6.0
_NS_OUT_PER_CHUNK = 1.7
_NS_PER_CALL = 4000.0


def _absmax(x: np.ndarray) -> int:
    """max |x| as an exact Python int (no overflow for the most negative value)."""
    if x.ndim == 2 and not x.flags.c_contiguous and x.T.flags.c_contiguous:
        x = x.T  # a transposed operand: the same values, reduced in memory order
    return max(int(np.maximum.reduce(x, axis=None)), -int(np.minimum.reduce(x, axis=None)))


def abs_bound(x: np.ndarray) -> int:
    """An upper bound of max |x|: the dtype's own bound for 8-bit integers (128 / 255: as tight as
    the data's for quantised 8-bit values, and free), else the exact :func:`_absmax`."""
    if x.dtype.itemsize == 1:
        return 128 if x.dtype.kind == "i" else 255
    return _absmax(x) if x.size else 0


def _check_int(x: np.ndarray, name: str) -> None:
    if x.dtype.kind not in "iu" or x.dtype == np.uint64:
        raise TypeError(f"int_matmul: {name} must be a signed or <=32-bit unsigned integer array, "
                        f"got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"int_matmul: {name} must have at least one dimension (numpy matmul semantics)")


#: memo of :func:`matmul_plan` (it depends on k, the product bound and mn only); cleared when full
_PLANS: dict[tuple[int, int, int], tuple[str, int]] = {}
_PLANS_MAX = 4096


def matmul_plan(k: int, absmax_a: int, absmax_b: int, mn: int = 1 << 16) -> tuple[str, int]:
    """Choose the cheapest exact path for a product with contraction length ``k``.

    ``mn`` is the number of output elements (batch included); it only weighs the
    per-chunk cost against the GEMM cost.  Returns ``(path, chunk_k)`` with path
    one of ``"f32"``, ``"f64"``, ``"i64"`` (chunk_k = k for ``"i64"``).
    """
    p = absmax_a * absmax_b  # bound on |a_ik * b_kj| for every single product
    if p == 0 or k == 0:
        return "f32", max(k, 1)
    key = (k, p, mn)
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    if k * p > _INT64_MAX:
        raise OverflowError(
            f"int_matmul: |result| may reach {k} * {absmax_a} * {absmax_b} = {k * p}, which does not fit "
            "an int64 accumulator; requantise the operands to fewer bits first")
    # candidates in the order f32, f64, i64; the first of the cheapest wins
    best: tuple[str, int] | None = None
    best_cost = 0.0
    for path, limit, ns_mac in (("f32", F32_EXACT, _NS_MAC_F32), ("f64", F64_EXACT, _NS_MAC_F64)):
        if p > limit:
            continue
        chunk_max = limit // p
        n_chunks = -(-k // chunk_max)
        chunk = -(-k // n_chunks)  # balanced chunks: every chunk <= chunk_max
        cost = ns_mac * k * mn + n_chunks * (_NS_OUT_PER_CHUNK * mn + _NS_PER_CALL)
        if best is None or cost < best_cost:
            best, best_cost = (path, chunk), cost
    if best is None or _NS_MAC_I64 * k * mn < best_cost:
        best = ("i64", k)
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[key] = best
    return best


def int_matmul(a: np.ndarray, b: np.ndarray, out_dtype: np.dtype | type = np.int64) -> np.ndarray:
    """Exact integer matrix product ``a @ b`` as int64, computed with BLAS.

    ``a`` and ``b`` are integer arrays (any signed dtype, or unsigned up to 32 bits)
    with numpy ``matmul`` semantics: 1-D operands are promoted and the promoted axis
    removed, leading (batch) dimensions broadcast, and any strides (transposed or
    sliced views) are accepted.  The result equals ``a.astype(int64) @
    b.astype(int64)`` bit for bit; ``OverflowError`` is raised instead if the
    bound below could exceed the int64 range.

    Proof of exactness.  Let ``A >= max|a|``, ``B >= max|b|`` (computed exactly as
    Python ints from ``a.min()``/``a.max()``, or the dtype bound of 8-bit operands; see
    :func:`abs_bound`) and ``P = A * B``, so every single
    product satisfies ``|a_ik * b_kj| <= P``.  Let ``L`` be ``2**24`` for float32 or
    ``2**53`` for float64: every integer of magnitude ``<= L`` is exactly
    representable in that format.  The contraction axis K is cut into chunks of
    ``c <= L // P`` consecutive indices (so ``c * P <= L``).

    1. Operands: ``A <= P <= L`` and ``B <= P <= L`` (both are >= 1 when P > 0), so
       the conversion of ``a`` and ``b`` to the float format is exact.
    2. One chunk on BLAS: a classical GEMM (OpenBLAS, MKL, ... ; no Strassen-type
       algorithm) forms each output element as a sequence of multiplications,
       additions or fused multiply-adds whose every intermediate value is the
       exact sum of some subset of the chunk's products ``a_ik * b_kj``, whatever
       the blocking, vectorisation or summation order.  Such a subset sum is an
       integer of magnitude ``<= c * P <= L``, hence representable; IEEE-754
       operations return the exact result whenever it is representable, so by
       induction no operation ever rounds and the chunk result is exact.
    3. Chunks are added in float64 when the whole sum is bounded by
       ``K * P <= 2**53`` (every partial sum of chunk results is again an integer
       ``<= K * P``, exact by the same argument), otherwise each chunk is
       converted to int64 (exact: it is an integer ``<= L < 2**63``) and added in
       int64, which is exact because ``K * P <= 2**63 - 1`` is checked up front.
    4. If ``P > 2**53`` no float format is exact even for one product, and numpy's
       int64 matmul (exact, no BLAS) is used.

    Among the exact paths the cheapest by a simple cost model is chosen
    (:func:`matmul_plan`): float32 with few chunks beats float64 (about half the
    cost per multiply-accumulate), but each extra chunk costs one accumulation
    pass, so wide operands (e.g. 8 x 16 bits, 16 x 16 bits) go to float64 with
    one chunk.

    ``out_dtype`` (default int64) is the dtype of the result; a narrower integer dtype is only
    correct when the caller knows the product fits it (the compile-time accumulator bound), and
    saves a full int64 pass over the output.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    _check_int(a, "a")
    _check_int(b, "b")
    k = a.shape[-1]
    kb = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    if k != kb:
        raise ValueError(f"int_matmul: contraction dimensions differ: a {a.shape} @ b {b.shape}")
    if a.size == 0 or b.size == 0:
        return np.matmul(a.astype(np.int64), b.astype(np.int64))

    if b.ndim <= 2:  # batch dims (if any) only from a
        mn = math.prod(a.shape[:-1]) * (b.shape[-1] if b.ndim == 2 else 1)
    else:
        out_shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        mn = math.prod(out_shape) * (a.shape[-2] if a.ndim >= 2 else 1) * b.shape[-1]
    absmax_a, absmax_b = abs_bound(a), abs_bound(b)
    if absmax_a * absmax_b == 0:  # an all-zero operand: zeros of the broadcast output shape
        return np.matmul(a[..., :0].astype(np.int64), _k_slice(b, 0, 0).astype(np.int64)).astype(out_dtype)
    path, chunk = matmul_plan(k, absmax_a, absmax_b, mn)
    if path == "i64":
        return np.matmul(a.astype(np.int64), b.astype(np.int64)).astype(out_dtype, copy=False)
    ftype = np.float32 if path == "f32" else np.float64
    af, bf = a.astype(ftype), b.astype(ftype)
    lead = None
    if a.ndim > 2 and b.ndim == 2:  # (..., M, K) @ (K, N): one GEMM over all rows, not one per batch item
        lead = a.shape[:-1]
        af = af.reshape(-1, k)
    acc = exact_float_matmul(af, bf, chunk, k * absmax_a * absmax_b)
    if lead is not None:
        acc = acc.reshape(*lead, acc.shape[-1])
    return acc.astype(out_dtype, copy=False)


def blas_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul``, on a single BLAS thread when the product is small
    (:func:`rctc.runtime.blas.blas_threads_for`)."""
    macs = max(a.size * (b.shape[-1] if b.ndim > 1 else 1), b.size * (a.shape[-2] if a.ndim > 1 else 1))
    with blas_threads_for(macs):
        return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)


def exact_float_matmul(af: np.ndarray, bf: np.ndarray, chunk: int | Sequence[tuple[int, int]],
                       bound: int) -> np.ndarray:
    """``af @ bf`` for float arrays holding integers, exact by the proof of :func:`int_matmul`.

    ``chunk`` comes from :func:`matmul_plan` for the operands' float dtype (every partial sum of
    ``chunk`` products is exact), or is an explicit list of contraction ranges ``(k0, k1)`` covering
    ``[0, K)`` in order, each one exact in the operands' dtype (a data-dependent bound, e.g.
    :func:`pixel_ranges`). ``bound`` bounds every |result|
    (``K * max|a| * max|b|``). The result holds the exact integers: in the operands' dtype when one
    piece covers K, else in float64 when ``bound <= 2**53``, else int64.
    """
    k = af.shape[-1]
    if isinstance(chunk, (int, np.integer)) and chunk >= k:  # one piece: no bookkeeping
        return blas_matmul(af, bf)
    if isinstance(chunk, (int, np.integer)):
        ranges = [(k0, min(k0 + int(chunk), k)) for k0 in range(0, k, int(chunk))]
    else:
        ranges = list(chunk)
    if len(ranges) <= 1:
        return blas_matmul(af, bf)
    total_in_f64 = bound <= F64_EXACT
    (k0, k1), rest = ranges[0], ranges[1:]
    part = blas_matmul(af[..., k0:k1], _k_slice(bf, k0, k1))
    acc = part.astype(np.float64 if total_in_f64 else np.int64)
    for k0, k1 in rest:
        blas_matmul(af[..., k0:k1], _k_slice(bf, k0, k1), out=part)
        if total_in_f64:
            np.add(acc, part, out=acc)
        else:
            np.add(acc, part.astype(np.int64), out=acc)
    return acc


def _k_slice(b: np.ndarray, k0: int, k1: int) -> np.ndarray:
    """Rows ``k0:k1`` of the contraction axis of the right operand (a view)."""
    return b[k0:k1] if b.ndim == 1 else b[..., k0:k1, :]


def pixel_ranges(a: np.ndarray, b_bound: int, limit: int) -> list[tuple[int, int]]:
    """Ranges of the contraction axis of an exact integer product ``a (.., M, K) @ b (.., K, N)``
    whose partial sums provably stay within ``limit``.

    Every partial sum BLAS forms for output ``(m, n)`` from a range's products is a subset sum of
    ``a[m, k] * b[k, n]`` (the argument of :func:`int_matmul`), so it is bounded by the row's
    ``sum_k |a[m, k]| * b_bound`` (``b_bound >= max |b|``); a range fits when every row's sum does.
    The axis is cut in blocks of a quarter of ``limit // (max|a| * b_bound)`` indices (one block
    always fits), and consecutive blocks are merged greedily while every row fits. For a weight gradient ``a``
    is the integer ``dy`` on its pixel grid: sparse or small gradients give one or a few ranges
    where ``K * max|a| * b_bound`` would give dozens. Needs ``max|a| * b_bound <= limit``.
    """
    k = a.shape[-1]
    if a.size == 0:
        return [(0, k)]
    rows = np.abs(a.reshape(-1, k) if a.dtype.kind == "f" else a.reshape(-1, k).astype(np.int64))
    amax = float(rows.max())
    if amax == 0.0 or b_bound == 0:
        return [(0, k)]
    # a quarter of the longest range that always fits: ranges end within 25% of where the
    # column-exact greedy cut would end them, with few blocks to scan
    block = min(k, max(1, int(limit // (int(amax) * int(b_bound))) // 4))
    full = k - k % block
    acc = np.float64 if rows.dtype.kind == "f" else np.int64
    # per-row block sums, exact: each is at most block * max|a| <= limit <= 2^53
    bs = np.add.reduce(rows[:, :full].reshape(rows.shape[0], -1, block), axis=2, dtype=acc)
    if full < k:
        bs = np.concatenate([bs, np.add.reduce(rows[:, full:], axis=1, keepdims=True, dtype=acc)], axis=1)
    nb = bs.shape[1]
    cs = np.cumsum(bs, axis=1, dtype=np.float64)  # exact: integer sums far below 2^53
    budget = float(limit // int(b_bound))
    ranges: list[tuple[int, int]] = []
    b0 = 0
    while b0 < nb:
        base = cs[:, b0 - 1] if b0 else 0.0
        over = (cs[:, b0:] - (base if np.isscalar(base) else base[:, None])) > budget
        fits = int(np.argmax(over.any(axis=0))) if over.any() else nb - b0
        b1 = b0 + max(fits, 1)
        ranges.append((b0 * block, min(b1 * block, k)))
        b0 = b1
    return ranges

"""Binary arithmetic with exponent alignment: Add, Sub, Mul, Concat, and their backward rules.

Needs :mod:`rctc.runtime.intref.core`. Operands are ``(q, e)`` integer tensors (numpy
broadcasting); results are rounded once, to ``bits``, by :func:`~rctc.runtime.intref.core.requantize`.

* Add / Sub: both operands are brought exactly to the finer exponent (``align``, int64 left
  shifts; only when the exponents differ by more than ~54 bits is the finer one rounded),
  added exactly, then requantised: error ``<= 2^(e_out-1)`` (nearest).
* Mul: the exact product ``qa * qb`` at ``ea + eb``, requantised: error ``<= 2^(e_out-1)``.
* Concat: every input aligned to the finest exponent, concatenated, requantised once.

Backward: Add passes ``dy`` (and ``-dy`` for Sub's second operand; negation is exact in the
symmetric range), summed over broadcast axes (an exact int64 sum, then one rounding). Mul:
``da = dy * b`` and ``db = dy * a`` (exact products, summed over broadcast axes, one rounding).
Concat splits ``dy`` exactly (same exponent). Stochastic rounding when ``rand`` is given
(one uint32 array per output, shaped like that output).
"""

from __future__ import annotations

import numpy as np

from rctc.runtime.intref.core import I32_MAX, Rand, absmax, align, as_int64, requantize

__all__ = ["add", "add_backward", "concat", "concat_backward", "mul", "mul_backward", "sub", "sub_backward"]

Tensor = tuple[np.ndarray, int]


def _aligned_pair(qa: np.ndarray, ea: int, qb: np.ndarray, eb: int) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`~rctc.runtime.intref.core.align` of two operands. When both are stored in at most 16
    bits and the exponents differ by at most 14, align's common exponent is ``min(ea, eb)`` (the
    shifted magnitudes stay below ``2^29``, far from its 2^61 headroom) and the exact left shift,
    sum and difference fit int32 (``|a| + |b| < 2^30``): the same integers in a narrower dtype.
    Operands of up to 32 bits (accumulators summed by passes/sum_accumulators.py) take int32 too
    when their shifted magnitudes sum to at most ``2^31 - 1`` (measured, not assumed)."""
    ea, eb = int(ea), int(eb)
    qa, qb = np.asarray(qa), np.asarray(qb)
    if qa.dtype.kind == "i" and qb.dtype.kind == "i" and qa.dtype.itemsize <= 4 and qb.dtype.itemsize <= 4:
        e = min(ea, eb)
        narrow = qa.dtype.itemsize <= 2 and qb.dtype.itemsize <= 2 and abs(ea - eb) <= 14
        if narrow or (max(ea, eb) - e <= 30
                      and (absmax(qa) << (ea - e)) + (absmax(qb) << (eb - e)) <= I32_MAX):
            a = np.left_shift(qa, np.int32(ea - e), dtype=np.int32)
            b = np.left_shift(qb, np.int32(eb - e), dtype=np.int32)
            return a, b, e
    (a, b), e = align([(qa, ea), (qb, eb)])
    return a, b, e


def add(qa: np.ndarray, ea: int, qb: np.ndarray, eb: int, bits: int = 8,
        rand: Rand = None) -> Tensor:
    """``a + b`` (broadcast): exact sum at the aligned exponent, one rounding to ``bits``."""
    a, b, e = _aligned_pair(qa, ea, qb, eb)
    return requantize(np.add(a, b, out=a) if a.shape == np.broadcast_shapes(a.shape, b.shape) else a + b, e,
                      bits, rand=rand, owned=True)


def sub(qa: np.ndarray, ea: int, qb: np.ndarray, eb: int, bits: int = 8,
        rand: Rand = None) -> Tensor:
    """``a - b`` (broadcast): exact difference at the aligned exponent, one rounding to ``bits``."""
    a, b, e = _aligned_pair(qa, ea, qb, eb)
    return requantize(a - b, e, bits, rand=rand, owned=True)


def mul(qa: np.ndarray, ea: int, qb: np.ndarray, eb: int, bits: int = 8,
        rand: Rand = None) -> Tensor:
    """``a * b`` (broadcast): exact product at ``ea + eb``, one rounding to ``bits``."""
    return requantize(as_int64(qa) * as_int64(qb), int(ea) + int(eb), bits, rand=rand, owned=True)


def reduce_to(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Exact int64 sum of a broadcast result back to an operand's ``shape``."""
    x = as_int64(x)
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and x.shape[i + lead] != 1)
    return x.sum(axis=axes).reshape(shape) if axes else x


def _grad(d: np.ndarray, de: int, shape: tuple[int, ...], bits: int, rand: np.ndarray | None) -> Tensor:
    return requantize(reduce_to(d, shape), de, bits, rand=rand)


def add_backward(dq: np.ndarray, de: int, shape_a: tuple[int, ...], shape_b: tuple[int, ...], bits: int = 8,
                 rand_a: np.ndarray | None = None, rand_b: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """``(da, db) = (dy, dy)`` summed over each operand's broadcast axes."""
    return _grad(dq, de, shape_a, bits, rand_a), _grad(dq, de, shape_b, bits, rand_b)


def sub_backward(dq: np.ndarray, de: int, shape_a: tuple[int, ...], shape_b: tuple[int, ...], bits: int = 8,
                 rand_a: np.ndarray | None = None, rand_b: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """``(da, db) = (dy, -dy)`` summed over each operand's broadcast axes."""
    neg = (-as_int64(dq)).astype(dq.dtype)
    return _grad(dq, de, shape_a, bits, rand_a), _grad(neg, de, shape_b, bits, rand_b)


def mul_backward(qa: np.ndarray, ea: int, qb: np.ndarray, eb: int, dq: np.ndarray, de: int, bits: int = 8,
                 rand_a: np.ndarray | None = None, rand_b: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """``da = sum(dy * b)``, ``db = sum(dy * a)`` over broadcast axes: exact, then one rounding each."""
    d = as_int64(dq)
    da = requantize(reduce_to(d * as_int64(qb), np.shape(qa)), int(de) + int(eb), bits, rand=rand_a)
    db = requantize(reduce_to(d * as_int64(qa), np.shape(qb)), int(de) + int(ea), bits, rand=rand_b)
    return da, db


def concat(tensors: list[Tensor], axis: int, bits: int = 8) -> Tensor:
    """Concatenate along ``axis`` after aligning every input to the finest exponent (exact),
    then one nearest rounding to ``bits`` (exact when the aligned values fit)."""
    ints, e = align(tensors)
    return requantize(np.concatenate(ints, axis=axis), e, bits)


def concat_backward(dq: np.ndarray, de: int, sizes: list[int], axis: int) -> list[Tensor]:
    """Split ``dy`` along ``axis`` into pieces of ``sizes``: exact, same exponent."""
    cuts = np.cumsum(sizes)[:-1]
    return [(p, int(de)) for p in np.split(dq, cuts, axis=axis)]

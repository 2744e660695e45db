"""Pools and means: MaxPool (exact), AveragePool / GlobalAveragePool / ReduceMean (integer sum
times a fixed-point reciprocal), and their backward rules.

Needs :mod:`rctc.runtime.intref.core`. 2-D pools take ``(N, C, H, W)`` integer tensors, a
kernel ``(kh, kw)``, strides ``(sh, sw)`` and ONNX pads ``(top, left, bottom, right)``
(dilation 1, floor output size).

* MaxPool: the window maximum, exact, same exponent. Padding never wins. Ties: the first
  maximum in row-major window order is the argmax; the backward adds each ``dy`` to its
  window's argmax (an exact int64 scatter-add), then one rounding to ``bits`` (exact when the
  sums fit, e.g. non-overlapping windows). Windows that tile the input (stride = kernel, no
  pads: LeNet's, the U-Net's) run on one gather of their taps (``_tap_values``): the same
  integers, checked against the general tap loops in tests.
* Mean of ``n`` values ``S / n``: ``S`` is the exact int64 sum; ``R = round(2^32 / n)``
  (:func:`~rctc.runtime.intref.core.recip_fixed`) and ``S * R`` at ``e - 32`` is requantised
  once. ``|S R 2^-32 - S/n| <= |S| 2^-33`` (R's rounding), so the error is
  ``<= 2^(e_out-1) + max|S| 2^(e-33)``; needs ``|S| < 2^30`` (checked). AveragePool's ``n``
  is the count of non-pad elements (``count_include_pad=0``, ONNX's default) or ``kh*kw``.
* Mean backward: each input receives ``sum over its windows of dy_w * R_w`` (exact int64),
  rounded once (stochastic with ``rand``).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from rctc.runtime.intref.core import (
    Rand,
    absmax,
    as_int64,
    check_rand,
    recip_fixed,
    requant_shift,
    requantize,
    round_part,
)

__all__ = [
    "RECIP_FRAC",
    "avgpool2d",
    "avgpool2d_backward",
    "global_avgpool",
    "global_avgpool_backward",
    "maxpool2d",
    "maxpool2d_backward",
    "reduce_mean",
    "reduce_mean_backward",
]

RECIP_FRAC = 32
_NEG = np.int64(-(2**62))
Tensor = tuple[np.ndarray, int]
Pair = tuple[int, int]
Pads = tuple[int, int, int, int]


def _out_size(h: int, w: int, k: Pair, s: Pair, p: Pads) -> Pair:
    return (h + p[0] + p[2] - k[0]) // s[0] + 1, (w + p[1] + p[3] - k[1]) // s[1] + 1


def _taps(shape: tuple[int, ...], k: Pair, s: Pair, p: Pads):
    """Yield ``(i, j, rows, cols)``: kernel offset and the padded-grid slices it reads."""
    oh, ow = _out_size(shape[2], shape[3], k, s, p)
    for i in range(k[0]):
        for j in range(k[1]):
            yield i, j, slice(i, i + s[0] * (oh - 1) + 1, s[0]), slice(j, j + s[1] * (ow - 1) + 1, s[1])


def _pad(x: np.ndarray, p: Pads, value: np.int64) -> np.ndarray:
    return np.pad(as_int64(x), ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=value)


def _argmax(q: np.ndarray, k: Pair, s: Pair, p: Pads) -> tuple[np.ndarray, np.ndarray]:
    xp = _pad(q, p, _NEG)
    best = None
    idx = None
    for i, j, rs, cs in _taps(q.shape, k, s, p):
        v = xp[:, :, rs, cs]
        if best is None:
            best, idx = v.copy(), np.zeros(v.shape, np.int64)
        else:
            win = v > best  # strictly greater: the first maximum stays
            best = np.where(win, v, best)
            idx = np.where(win, i * k[1] + j, idx)
    return best, idx


def _tiling(q: np.ndarray, k: Pair, s: Pair, p: Pads) -> bool:
    """The windows tile ``q`` (stride = kernel, no padding; rows / columns past the last window
    belong to none): the case :func:`_tap_values` serves."""
    return (s == k and not any(p) and np.asarray(q).dtype.kind == "i" and q.ndim == 4 and q.size > 0
            and q.shape[2] >= k[0] and q.shape[3] >= k[1])


@functools.lru_cache(maxsize=16)
def _tap_index_cached(shape: tuple[int, ...], k: Pair) -> np.ndarray:
    return _tap_index(shape, k)


def _tap_index(shape: tuple[int, ...], k: Pair) -> np.ndarray:
    """``(kh kw, windows)``: the flat index into an array of ``shape`` of window ``w``'s tap ``t``
    (taps in row-major window order, windows in ``(N, C, OH, OW)`` order), for tiling windows."""
    n, c, h, w = shape
    oh, ow = _out_size(h, w, k, k, (0, 0, 0, 0))
    base = (np.arange(n * c)[:, None, None] * (h * w) + (np.arange(oh) * (k[0] * w))[None, :, None]
            + (np.arange(ow) * k[1])[None, None, :]).reshape(-1)
    taps = (np.arange(k[0])[:, None] * w + np.arange(k[1])[None, :]).reshape(-1)
    idx = taps[:, None] + base[None, :]
    idx.flags.writeable = False
    return idx


def _tap_values(q: np.ndarray, k: Pair) -> tuple[np.ndarray, np.ndarray]:
    """``(index, values)``: :func:`_tap_index` of ``q`` and ``q``'s values there, ``(kh kw, windows)``
    in ``q``'s dtype. One gather: every later pass runs along whole rows of windows (numpy's loops
    over the short window axes of an (N, C, OH, kh, OW, kw) view cost several times more)."""
    shape = tuple(int(v) for v in q.shape)
    idx = _tap_index_cached(shape, k) if q.size <= 1 << 20 else _tap_index(shape, k)
    return idx, np.take(q.reshape(-1), idx)


def maxpool2d(q: np.ndarray, e: int, kernel: Pair, strides: Pair = (1, 1), pads: Pads = (0, 0, 0, 0)) -> Tensor:
    """Window maximum: exact, same dtype and exponent."""
    q = np.asarray(q)
    if _tiling(q, kernel, strides, pads):
        grid = _out_size(q.shape[2], q.shape[3], kernel, strides, pads)
        return _tap_values(q, kernel)[1].max(axis=0).reshape(*q.shape[:2], *grid), int(e)
    xp = _pad(q, pads, _NEG)
    best = None
    for _, _, rs, cs in _taps(q.shape, kernel, strides, pads):
        best = xp[:, :, rs, cs].copy() if best is None else np.maximum(best, xp[:, :, rs, cs], out=best)
    return best.astype(q.dtype), int(e)


def maxpool2d_backward(q: np.ndarray, e: int, dq: np.ndarray, de: int, kernel: Pair, strides: Pair = (1, 1),
                       pads: Pads = (0, 0, 0, 0), bits: int = 8, rand: Rand = None) -> Tensor:
    """``dy`` added to each window's argmax (first maximum, row-major), then one rounding."""
    q, dq = np.asarray(q), np.asarray(dq)
    if _tiling(q, kernel, strides, pads) and dq.dtype.kind == "i" \
            and dq.shape == (*q.shape[:2], *_out_size(q.shape[2], q.shape[3], kernel, strides, pads)) \
            and (q.dtype.itemsize < 8 or absmax(q) < (1 << 62) // (kernel[0] * kernel[1])):  # keys fit int64
        return requantize(_tiled_scatter(q, dq, kernel), de, bits, rand=rand)
    _, idx = _argmax(q, kernel, strides, pads)
    n, c, h, w = q.shape
    hp, wp = h + pads[0] + pads[2], w + pads[1] + pads[3]
    oh, ow = idx.shape[2:]
    rows = np.arange(oh)[:, None] * strides[0] + idx // kernel[1]
    cols = np.arange(ow)[None, :] * strides[1] + idx % kernel[1]
    # one index into the (n, c, hp, wp) grid per window; windows that do not overlap (stride >=
    # kernel) have distinct argmax positions, so a plain scatter is the exact sum
    flat = (rows * wp + cols).reshape(n * c, -1) + (np.arange(n * c, dtype=np.int64) * (hp * wp))[:, None]
    acc = np.zeros(n * c * hp * wp, np.int64)
    d = as_int64(dq).reshape(-1)
    if strides[0] >= kernel[0] and strides[1] >= kernel[1]:
        acc[flat.reshape(-1)] = d
    else:
        np.add.at(acc, flat.reshape(-1), d)
    acc = acc.reshape(n, c, hp, wp)[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w]
    return requantize(acc, de, bits, rand=rand)


def _tiled_scatter(q: np.ndarray, dq: np.ndarray, k: Pair) -> np.ndarray:
    """The backward's accumulator for tiling windows, in ``dq``'s dtype: each ``dy`` at its window's
    first maximum in row-major order, 0 elsewhere. The first maximum is the largest key ``q kk + r``
    with ``r = kk - 1 - t`` over the window's taps ``t`` (``kk = kh kw``: keys are distinct, and a
    larger ``q`` always wins), so its ``r`` is that key minus ``kk`` times the window's maximum.
    Windows do not overlap: every element receives at most one ``dy``, the values of the general
    path's int64 scatter-add."""
    idx, vals = _tap_values(q, k)
    kk = idx.shape[0]
    # the narrowest dtype holding every key (|q kk| + kk - 1 with |q| <= 2^(8 itemsize - 1))
    dt = next(t for t in (np.int16, np.int32, np.int64)
              if kk << (8 * vals.dtype.itemsize) <= np.iinfo(t).max) if vals.dtype.itemsize < 8 else np.int64
    key = np.multiply(vals, dt(kk), dtype=dt)
    key += np.arange(kk - 1, -1, -1, dtype=dt)[:, None]
    r = key.max(axis=0)
    r -= np.multiply(vals.max(axis=0), dt(kk), dtype=dt)
    offset = (idx[:, 0] - idx[0, 0])[::-1]  # flat offset of the tap whose r is the position
    acc = np.zeros(q.size, dq.dtype)
    acc[idx[0] + np.take(offset, r)] = dq.reshape(-1)
    return acc.reshape(q.shape)


def _counts(shape: tuple[int, ...], k: Pair, s: Pair, p: Pads, include_pad: bool) -> np.ndarray:
    """Per output position, the number of elements averaged (a compile-time constant)."""
    ones = np.ones((1, 1) + tuple(shape[2:]), np.int64)
    if include_pad:
        oh, ow = _out_size(shape[2], shape[3], k, s, p)
        return np.full((oh, ow), k[0] * k[1], np.int64)
    xp = _pad(ones, p, np.int64(0))
    tot = sum(xp[:, :, rs, cs] for _, _, rs, cs in _taps(shape, k, s, p))
    return tot[0, 0]


def _recips(counts: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda n: recip_fixed(int(n), RECIP_FRAC), otypes=[np.int64])(counts)


def _mean_acc(total: np.ndarray, recip: np.ndarray) -> np.ndarray:
    if absmax(total) >= 1 << 30:
        raise OverflowError("intref mean: the integer sum reaches 2^30; requantise the input to fewer bits")
    return total * recip


def avgpool2d(q: np.ndarray, e: int, kernel: Pair, strides: Pair = (1, 1), pads: Pads = (0, 0, 0, 0),
              count_include_pad: bool = False, bits: int = 8) -> Tensor:
    """Window mean: exact int64 window sum times ``round(2^32 / count)``, one rounding."""
    xp = _pad(q, pads, np.int64(0))
    total = sum(xp[:, :, rs, cs] for _, _, rs, cs in _taps(q.shape, kernel, strides, pads))
    recip = _recips(_counts(q.shape, kernel, strides, pads, count_include_pad))
    return requantize(_mean_acc(total, recip), int(e) - RECIP_FRAC, bits)


def avgpool2d_backward(dq: np.ndarray, de: int, in_shape: tuple[int, ...], kernel: Pair, strides: Pair = (1, 1),
                       pads: Pads = (0, 0, 0, 0), count_include_pad: bool = False, bits: int = 8,
                       rand: np.ndarray | None = None) -> Tensor:
    """Each input gets ``sum_w dy_w * R_w`` over the windows covering it (exact), one rounding."""
    n, c, h, w = in_shape
    recip = _recips(_counts(in_shape, kernel, strides, pads, count_include_pad))
    g = as_int64(dq) * recip
    acc = np.zeros((n, c, h + pads[0] + pads[2], w + pads[1] + pads[3]), np.int64)
    for _, _, rs, cs in _taps(in_shape, kernel, strides, pads):
        acc[:, :, rs, cs] += g
    acc = acc[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w]
    return requantize(acc, int(de) - RECIP_FRAC, bits, rand=rand)


def reduce_mean(q: np.ndarray, e: int, axes: tuple[int, ...], keepdims: bool = True, bits: int = 8) -> Tensor:
    """Mean over ``axes``: exact int64 sum times ``round(2^32 / n)``, one rounding."""
    axes = tuple(a % q.ndim for a in axes)
    n = math.prod(q.shape[a] for a in axes)
    total = as_int64(q).sum(axis=axes, keepdims=keepdims)
    return requantize(_mean_acc(total, np.int64(recip_fixed(n, RECIP_FRAC))), int(e) - RECIP_FRAC, bits)


def reduce_mean_backward(dq: np.ndarray, de: int, in_shape: tuple[int, ...], axes: tuple[int, ...],
                         keepdims: bool = True, bits: int = 8, rand: np.ndarray | None = None) -> Tensor:
    """``dy * R`` broadcast to every input element (exact), one rounding: the shift from the
    products themselves (the broadcast holds no other value), each element rounded with its own
    word, so no int64 copy of the input's size is formed."""
    axes = tuple(a % len(in_shape) for a in axes)
    n = math.prod(in_shape[a] for a in axes)
    d = as_int64(dq)
    if not keepdims:
        d = np.expand_dims(d, axes)
    prod = d * np.int64(recip_fixed(n, RECIP_FRAC))
    m = absmax(prod)
    s = requant_shift(m, bits, rand is not None)
    q = round_part(np.broadcast_to(prod, in_shape), m, s, bits, check_rand(rand, tuple(in_shape)))
    return q, int(de) - RECIP_FRAC + s


def global_avgpool(q: np.ndarray, e: int, bits: int = 8) -> Tensor:
    """Mean over the spatial axes, keepdims (ONNX GlobalAveragePool)."""
    return reduce_mean(q, e, tuple(range(2, q.ndim)), True, bits)


def global_avgpool_backward(dq: np.ndarray, de: int, in_shape: tuple[int, ...], bits: int = 8,
                            rand: np.ndarray | None = None) -> Tensor:
    """:func:`reduce_mean_backward` over the spatial axes."""
    return reduce_mean_backward(dq, de, in_shape, tuple(range(2, len(in_shape))), True, bits, rand)

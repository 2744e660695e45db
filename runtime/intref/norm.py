"""BatchNormalization (training and inference) and LayerNormalization from exact integer sums.

Needs :mod:`rctc.runtime.intref.core`. A normalisation works on *groups* (BatchNorm: one per
channel over batch and space; LayerNorm: one per row over the normalised axes) of ``N``
integers ``q`` at exponent ``e``; it requires ``N * max|q| < 2^29`` (checked).

Forward, per group (integer only; per-group scalars are Python ints):

* ``S1 = sum q``, ``S2 = sum q^2`` (exact int64); ``D = N S2 - S1^2`` (``= N^2 var 2^-2e``).
* ``E = round(eps N^2 2^-2e)``, ``P = max(0, (61 - bitlen max(D, E)) // 2)``,
  ``V = D 4^P + round(eps N^2 2^(2P-2e))`` (eps: the float32 attribute's exact ratio; ``P``
  keeps ~30 significant bits when the variance is small on the input's grid, e.g. a constant
  group where eps dominates); ``(m, f') = rsqrt_fixed(V)``,
  ``f = f' - P``: ``1/sqrt(D + eps N^2 2^-2e) = m 2^-f (1 + d)``, ``|d| < 2^-29.6``.
* ``xhat = round((N q - S1) m 2^-(f-16))``: Q16, error ``<= 2^-17 + |xhat| 2^-29``.
* ``y = requantize(gamma_q xhat, e_gamma - 16, bits, bias = beta)`` (beta brought exactly to
  ``e_gamma - 16`` when it is coarser): error ``<= 2^(e_out-1) + |gamma| 2^-16`` (measured).

Backward (training), per group, from the forward input (recomputed ``xhat``) and ``dy``:
``dbeta = sum dy`` (exact, exponent ``e_dy``), ``dgamma = sum dy xhat`` (exact, ``e_dy - 16``),
both int64 accumulators for the update; ``dx = gamma inv_std (dy - mean(dy) - xhat
mean(dy xhat))`` with both means rounded to Q16 of the error's unit, ``xhat mean(dy xhat)``
rounded to Q16, and ``gamma inv_std = gamma_q N m 2^(e_gamma - f - e)`` as one multiplier per
group on a common exponent, cut to at most 31 bits so the product fits int64; one rounding
to ``bits`` (stochastic with ``rand``). LayerNorm's backward rounds ``g = dy * gamma`` to 16
bits (nearest) first and uses ``g`` in place of ``dy`` with ``gamma = 1``.

Running statistics (BatchNorm state): running mean and running (biased) variance, each a
16-bit dynamic fixed point tensor ``(int16 q, e)``; update ``r <- (MU r + (2^16 - MU) b) / 2^16``
with ``MU = round(momentum 2^16)``, the batch mean ``round(S1 2^16 / N)`` at ``e - 16`` and
batch variance ``round(D 2^16 / N^2)`` at ``2e - 16`` aligned exactly with ``r``, one nearest
rounding to 16 bits. Inference uses ``(x - r_mean) rsqrt(r_var + eps)``, the same multiplier
construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from rctc.runtime.intref.core import (
    absmax,
    align,
    as_int64,
    bit_length,
    check_rand,
    exact_ratio,
    fixed_point,
    requant_shift,
    requantize,
    round_part,
    rsqrt_fixed,
    rsqrt_fixed_array,
    storage_dtype,
)
from rctc.runtime.intref.norm_scalars import (
    div_round,
    div_rows,
    eps_term,
    eps_terms,
    headroom,
    multipliers,
    rshift,
)
from rctc.runtime.intref.rows import row_dot, row_max, row_min, row_sum

__all__ = [
    "STATE_BITS",
    "XFRAC",
    "batchnorm_backward",
    "batchnorm_inference",
    "batchnorm_train",
    "layernorm",
    "layernorm_backward",
]

XFRAC = 16
STATE_BITS = 16
MU_FRAC = 16
Tensor = tuple[np.ndarray, int]


def _col(v: np.ndarray) -> np.ndarray:
    """A per-group (G,) array broadcast against (B, G, S)."""
    return v[None, :, None]


def _group_reduce(ufunc: np.ufunc, x: np.ndarray, dtype: type | None = None) -> np.ndarray:
    """``ufunc.reduce`` of ``x`` (B, G, S) over its batch and value axes: one entry per group.

    The batch axis first (whole (G, S) slices combined element by element, fast whatever S is),
    then the values of each group; integer sums / minima / maxima do not depend on the order. A
    batch of one (a LayerNorm's rows) is reduced along its values directly, by the short-row
    reductions of :mod:`~rctc.runtime.intref.rows` where they apply (the same integers)."""
    if x.shape[0] == 1:
        if x.shape[2]:
            if ufunc is np.add and dtype is not None:
                return row_sum(x[0], dtype)
            if ufunc is np.maximum or ufunc is np.minimum:
                return (row_max if ufunc is np.maximum else row_min)(x[0])
        return ufunc.reduce(x[0], axis=1, dtype=dtype)
    return ufunc.reduce(ufunc.reduce(x, axis=0, dtype=dtype), axis=1)


def _groups_scalars(x: np.ndarray, e: int, eps: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """For ``x`` (B, G, S), any signed integer dtype (group ``g`` is ``x[:, g, :]``, ``N = B S`` values):
    ``(S1, D, m, f, max|q|)``, the first four one int64 entry per group.

    Every per-group scalar is an int64 array (the formulas of the module docstring, element by
    element): ``|S1| < 2^29``, ``D < N^2 max|q|^2 < 2^58``, ``D 4^P < 2^61`` and the eps term
    ``<= 2^62``, so their sum stays below 2^63. For inputs of at most 16 bits ``S1`` is accumulated
    in int32 (every partial sum is below ``N max|q| < 2^29``) and ``sum q^2`` too when
    ``N max|q|^2 < 2^31`` bounds every partial sum: the same integers as in int64."""
    g, n = x.shape[1], x.shape[0] * x.shape[2]
    amax = absmax(x)
    if n * amax >= 1 << 29:
        raise OverflowError(f"intref norm: N * max|q| = {n * amax} reaches 2^29; requantise first")
    narrow = x.dtype.itemsize <= 2  # int32 sums where they provably fit (N max|q| < 2^29 <= 2^31 here)
    sq = np.int32 if narrow and n * amax * amax < 1 << 31 else np.int64
    if x.shape[0] == 1 and x.shape[2] and narrow:  # rows (a LayerNorm): one widened copy, two einsum loops
        xw = x[0].astype(sq)
        s1 = row_sum(xw, sq).astype(np.int64)
        d = np.int64(n) * row_dot(xw, xw, sq).astype(np.int64) - s1 * s1
    else:
        s1 = _group_reduce(np.add, x, np.int32 if narrow else np.int64).astype(np.int64)
        d = np.int64(n) * np.einsum("bgs,bgs->g", x, x, dtype=sq).astype(np.int64) - s1 * s1
    eps0 = eps_term(eps, n, e)
    p = np.maximum(0, (61 - np.maximum(bit_length(d), eps0.bit_length())) // 2)
    top = int(p.max()) if g else 0
    eps_p = eps_terms(eps, n, e, top)[p]
    m, f = rsqrt_fixed_array(np.maximum((d << (2 * p)) + eps_p, 1))
    return s1, d, m, f - p, amax


#: elements per block of the element-wise passes over a normalisation's data (their int64
#: temporaries stay in the cache, and no step-sized temporary is allocated)
BLOCK = 1 << 17


def _blocks(x: np.ndarray) -> list[slice]:
    """Slices of the batch axis of ``x`` (B, G, S) holding about :data:`BLOCK` elements each."""
    rows = max(1, BLOCK // max(1, x.shape[1] * x.shape[2]))
    return [slice(i, min(i + rows, x.shape[0])) for i in range(0, x.shape[0], rows)] or [slice(0, 0)]


class _Xhat:
    """The Q16 ``xhat = ((N q - S1) m + 2^(s-1)) >> s`` (``s = f - 16``) of every element of ``x``
    (B, G, S), and element-wise functions of it (:meth:`prepare`).

    ``xhat`` is formed as ``(q (N m) + (2^(s-1) - S1 m)) >> s``, the same integer: ``|q N m| <
    2^29 2^32``, ``|S1 m| < 2^61`` and ``2^(s-1) < 2^47``, so every term and the sum fit int64.
    It depends on an element only through its group and its integer value, so for 8-bit ``x``
    it is evaluated once per group on the values ``-a .. a`` (``a = max|q|``), each clipped to
    the group's own ``[min q, max q]``: a ``(G, 2a + 1)`` table that a gather reads. The table
    is used when it is at most half the size of ``x`` (and below 2^30 entries), else the formula
    runs on the elements.
    Either way a function prepared by :meth:`prepare` gives ``fn(xhat)`` of the elements for an
    element-wise integer ``fn``: the same integers.

    Clipping makes every table entry the ``xhat`` of a value the group holds or of one between
    its minimum and maximum. ``xhat`` is non-decreasing in ``q`` (``N m > 0``, floor shift), so
    for any ``fn`` monotone in ``xhat`` (``gamma xhat + beta``) the largest ``|fn|`` over the
    table is the largest over the data: a requantise of the table has the data's shift."""

    def __init__(self, x: np.ndarray, e: int, eps: float) -> None:
        self.x = x
        self.n = x.shape[0] * x.shape[2]
        self.s1, self.d, self.m, self.f, a = _groups_scalars(x, e, eps)
        self.lo, g = -a, x.shape[1]
        self.table: np.ndarray | None = None
        self._kept: np.ndarray | None = None  # every element's xhat, inside kept_values
        if x.size and x.dtype.itemsize == 1 and g * (2 * a + 1) * 2 <= min(x.size, 1 << 31):
            v = np.arange(-a, a + 1, dtype=np.int64)[None, :]
            v = np.clip(v, _group_reduce(np.minimum, x).astype(np.int64)[:, None],
                        _group_reduce(np.maximum, x).astype(np.int64)[:, None])
            self.table = self._formula(v, lambda c: c[:, None])

    def col(self, v: np.ndarray) -> np.ndarray:
        """A per-group (G,) array shaped to broadcast against what a prepared ``fn`` is handed."""
        return v[:, None] if self.table is not None else _col(v)

    def _formula(self, q: np.ndarray, col: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        sh = self.f - XFRAC
        xhat = np.multiply(q, col(np.int64(self.n) * self.m), dtype=np.int64)
        xhat += col((np.int64(1) << (sh - 1)) - self.s1 * self.m)
        xhat >>= col(sh)
        return xhat

    def _gather(self, table: np.ndarray, rows: slice) -> np.ndarray:
        """``table[g, q - lo]`` for every element ``q`` of group ``g`` in batch rows ``rows``."""
        g, w = table.shape  # g w < 2^30 (see __init__): int32 indices, each
        # in range by construction (q - lo in [0, w)), so "wrap" never wraps (and skips the bounds check)
        idx = np.add(self.x[rows], _col(np.arange(g, dtype=np.int32) * np.int32(w) - np.int32(self.lo)),
                     dtype=np.int32)
        return np.take(table.reshape(-1), idx, mode="wrap")

    def prepare(self, fn: Callable[[np.ndarray], np.ndarray], headroom: int | None = None
                ) -> tuple[Callable[[slice], np.ndarray], type]:
        """``(rows -> fn(xhat) of the elements in batch rows rows, its dtype)`` (``fn`` element-wise
        and free to work in place; its per-group operands shaped by :meth:`col`). int64, or int32
        when ``headroom`` is given and the table's largest ``|fn|`` (a bound of every element's)
        is below ``2^31 - headroom``."""
        if self._kept is not None:
            kept = self._kept
            return (lambda rows: fn(kept[rows].copy())), np.int64
        if self.table is None:
            return (lambda rows: fn(self._formula(self.x[rows], _col))), np.int64
        mapped = fn(self.table.copy())
        if headroom is not None and absmax(mapped) < (1 << 31) - headroom:
            mapped = mapped.astype(np.int32)
        return (lambda rows: self._gather(mapped, rows)), mapped.dtype.type

    def values(self, rows: slice = slice(None)) -> np.ndarray:
        """``xhat`` of the elements in batch rows ``rows`` (int64)."""
        if self._kept is not None:
            return self._kept[rows]
        return self.prepare(lambda t: t)[0](rows)

    @contextmanager
    def kept_values(self) -> Iterator[np.ndarray]:
        """Every element's ``xhat``, formed once and read from there (by :meth:`values` and the
        functions :meth:`prepare` makes) inside the ``with`` block: for a caller that reads it
        several times and can hold an int64 array of the input's size."""
        self._kept = self.values()
        try:
            yield self._kept
        finally:
            self._kept = None

    def requantize(self, fn: Callable[[np.ndarray], np.ndarray], e_acc: int, bits: int, bias: np.ndarray,
                   bias_exp: int) -> Tensor:
        """``requantize(fn(xhat) + bias)`` of every element (``bias`` per group), ``fn`` monotone:
        on the table, then gathered block by block (the table's largest magnitude is the data's,
        see the class), else on the elements."""
        b = self.col(as_int64(bias).reshape(-1))
        if self.table is None:
            return requantize(fn(self._formula(self.x, _col)), e_acc, bits, bias=b, bias_exp=bias_exp, owned=True)
        qt, e = requantize(fn(self.table.copy()), e_acc, bits, bias=b, bias_exp=bias_exp, owned=True)
        out = np.empty(self.x.shape, qt.dtype)
        for rows in _blocks(self.x):
            out[rows] = self._gather(qt, rows)
        return out, e


def _groups_stats(x: np.ndarray, e: int, eps: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For ``x`` (B, G, S): ``(xhat Q16, S1, D, m, f)``, xhat int64 shaped like ``x`` (:class:`_Xhat`),
    the others one int64 entry per group."""
    xh = _Xhat(x, e, eps)
    return xh.values(), xh.s1, xh.d, xh.m, xh.f


def _dx(dy: np.ndarray, xh: _Xhat, gm: np.ndarray, e_acc: int, bits: int, rand: np.ndarray | None
        ) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """``gamma inv_std (dy - mean dy - xhat mean(dy xhat))`` per group of (B, G, S) arrays, rounded
    once to ``bits`` (stochastic with ``rand``, shaped like ``dy``): ``(dx, sum dy xhat, sum dy)``;
    the accumulator's value is ``acc * 2^(e_acc + offset)`` (``e_acc = e_dy + e_gamma - e``).

    ``inner = dy 2^16 - (mean dy + round(xhat mean(dy xhat) 2^-16))`` (the same integer as
    subtracting the two terms one after the other: nothing here comes near 2^62), the second
    term one element-wise function of ``xhat`` per group (:meth:`_Xhat.prepare`); ``acc = inner
    M_g`` with the multipliers cut to ``min(31, 61 - bitlen max|inner|)`` bits. The passes run
    block by block over the batch (:func:`_blocks`): the first forms the sums, the second
    ``inner`` (kept, int32 where it provably fits) and the largest ``|inner|`` of each group (so
    ``max|acc| = max_g (|M_g| max|inner_g|)``, the requantise's shift), the third forms ``acc``
    and rounds it (:func:`round_part`): the integers of one pass over the whole arrays."""
    n = dy.shape[0] * dy.shape[2]
    blocks = _blocks(dy)
    t1 = _group_reduce(np.add, dy, np.int32 if dy.dtype.itemsize <= 2 and n * absmax(dy) < 1 << 31
                       else np.int64).astype(np.int64)  # int32 when every partial sum provably fits
    t2 = np.zeros(dy.shape[1], np.int64)
    for rows in blocks:
        t2 += np.einsum("bgs,bgs->g", dy[rows], xh.values(rows), dtype=np.int64)
    m1, m2 = div_rows(t1, n, XFRAC), div_rows(t2, n, 0)

    def centre(t: np.ndarray) -> np.ndarray:
        t *= xh.col(m2)
        t += np.int64(1 << (XFRAC - 1))
        t >>= np.int64(XFRAC)
        t += xh.col(m1)
        return t

    # int32 where |dy 2^16| + max|centre| < 2^31 bounds every inner (then nothing leaves int32)
    centred, dt = xh.prepare(centre, headroom=absmax(dy) << XFRAC)
    inner = np.empty(dy.shape, dt)
    single = len(blocks) == 1  # one block: acc formed whole, its max read from it (no per-group peaks)
    peak = np.zeros(dy.shape[1], np.int64)  # max |inner| per group
    for rows in blocks:
        t = np.left_shift(dy[rows], dt(XFRAC), out=inner[rows], dtype=dt)  # in dt under numpy 1.x rules too
        t -= centred(rows)
        if not single:
            np.maximum(peak, _group_reduce(np.maximum, t), out=peak)
            np.maximum(peak, -_group_reduce(np.minimum, t).astype(np.int64), out=peak)
    mbits = min(31, 61 - (absmax(inner) if single else int(peak.max(initial=0))).bit_length())
    if absmax(gm) * n * int(xh.m.max(initial=0)) < 1 << 62:  # gamma N m in int64, else Python ints
        mult, g = multipliers(as_int64(gm) * np.int64(n) * xh.m, xh.f, mbits)
    else:
        mult, g = multipliers(gm.astype(object) * n * xh.m.astype(object), xh.f, mbits)
    # |M_g| <= 2^mbits and peak_g < 2^(61 - mbits): every product below 2^61, exact in int64
    out = np.empty(dy.shape, storage_dtype(bits))
    if single:  # max |acc| read from acc: max_g |M_g| peak_g, the same integer
        acc = np.multiply(inner, _col(mult), dtype=np.int64)
        m = absmax(acc)
        s = requant_shift(m, bits, rand is not None)
        round_part(acc, m, s, bits, rand, owned=True, out=out)
        return (out, int(e_acc) + g - XFRAC + s), t2, t1
    m = int((np.abs(mult) * peak).max(initial=0))
    s = requant_shift(m, bits, rand is not None)
    for rows in blocks:
        t = np.multiply(inner[rows], _col(mult), dtype=np.int64)
        round_part(t, m, s, bits, None if rand is None else rand[rows], owned=True, out=out[rows])
    return (out, int(e_acc) + g - XFRAC + s), t2, t1


def _bn_rows(q: np.ndarray) -> np.ndarray:
    """(B, C, ...) -> (B, C, spatial) in q's own integer dtype: channel ``c``'s group is ``[:, c, :]``
    (a view: the kernels widen to int64 inside their first multiply)."""
    x = as_int64(q) if np.asarray(q).dtype.kind != "i" else np.asarray(q)
    return x.reshape(x.shape[0], x.shape[1], -1)


def _chan(v: np.ndarray, ndim: int) -> np.ndarray:
    return as_int64(v).reshape((1, -1) + (1,) * (ndim - 2))


def _update(old: Tensor, new: np.ndarray, e_new: int, mu: int) -> Tensor:
    (o, b), ec = align([old, (new, e_new)], headroom=44)
    return requantize(o * np.int64(mu) + b * np.int64((1 << MU_FRAC) - mu), ec - MU_FRAC, STATE_BITS)


def batchnorm_train(q: np.ndarray, e: int, gamma: Tensor, beta: Tensor, running_mean: Tensor,
                    running_var: Tensor, eps: float = 1e-5, momentum: float = 0.9,
                    bits: int = 8, saved: dict | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Training-mode BatchNorm of ``(B, C, ...)``: ``(y, new_running_mean, new_running_var)``.

    ``saved`` (a dict) receives ``"stats"``: the per-group statistics (an ``_Xhat``, no per-element
    array) that :func:`batchnorm_backward` of the same ``q``, ``e`` and ``eps`` would recompute
    (hand it over as its ``saved``)."""
    e = int(e)
    x = _bn_rows(q)
    n = x.shape[0] * x.shape[2]
    xh = _Xhat(x, e, eps)
    if saved is not None:
        saved["stats"] = xh
    gm = as_int64(gamma[0]).reshape(-1)

    def scaled(t: np.ndarray) -> np.ndarray:
        t *= xh.col(gm)
        return t

    yq, ye = xh.requantize(scaled, int(gamma[1]) - XFRAC, bits, beta[0], int(beta[1]))
    y = (yq.reshape(q.shape), ye)
    s1, ds = xh.s1, xh.d
    mu = fixed_point(momentum, MU_FRAC)
    bmean = np.array([div_round(int(v) << 16, n) for v in s1], np.int64)
    bvar = np.array([div_round(int(d) << 16, n * n) for d in ds], np.int64)
    return y, _update(running_mean, bmean, e - 16, mu), _update(running_var, bvar, 2 * e - 16, mu)


def batchnorm_backward(q: np.ndarray, e: int, gamma: Tensor, dq: np.ndarray, de: int, eps: float = 1e-5,
                       bits: int = 8, rand: np.ndarray | None = None,
                       saved: dict | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dgamma, dbeta)``: dx at ``bits``; dgamma / dbeta as exact int64 accumulators.

    ``saved``: the dict :func:`batchnorm_train` filled for this ``q``, ``e``, ``eps`` (its statistics
    are used instead of recomputing them)."""
    e, de = int(e), int(de)
    x = _bn_rows(q)
    dy = _bn_rows(dq)
    xh = saved["stats"] if saved is not None and "stats" in saved else _Xhat(x, e, eps)
    rand = check_rand(rand, q.shape)
    (dq_, e_dx), dgamma, dbeta = _dx(dy, xh, as_int64(gamma[0]).reshape(-1), de + int(gamma[1]) - e, bits,
                                     None if rand is None else rand.reshape(dy.shape))
    dx = (dq_.reshape(q.shape), e_dx)
    return dx, (dgamma, de - XFRAC), (dbeta, de)


def batchnorm_inference(q: np.ndarray, e: int, gamma: Tensor, beta: Tensor, running_mean: Tensor,
                        running_var: Tensor, eps: float = 1e-5, bits: int = 8) -> Tensor:
    """``gamma (x - mean) / sqrt(var + eps) + beta`` with the integer running statistics."""
    (xa, ma), ed = align([(q, int(e)), (_chan(running_mean[0], q.ndim), int(running_mean[1]))], headroom=29)
    diff = xa - ma
    vq, ev = as_int64(running_var[0]), int(running_var[1])
    if ev % 2:
        vq, ev = vq << np.int64(1), ev - 1
    en, ed_eps = exact_ratio(eps)
    ms, fs = [], []
    for v in (int(t) for t in vq):
        p = headroom(v, rshift(en, (ed_eps.bit_length() - 1) + ev))
        m, f = rsqrt_fixed(max((v << 2 * p) + rshift(en, (ed_eps.bit_length() - 1) + ev - 2 * p), 1))
        ms.append(m)
        fs.append(f - p)
    gm = [int(v) for v in as_int64(gamma[0])]
    mbits = min(31, 61 - absmax(diff).bit_length())
    mult, g = multipliers(np.array([a * b for a, b in zip(gm, ms)] or [0], object)[: len(ms)], np.array(fs, np.int64),
                           mbits)
    acc = diff * _chan(mult, q.ndim)
    return requantize(acc, int(gamma[1]) + ed - ev // 2 + g, bits, bias=_chan(beta[0], q.ndim),
                      bias_exp=int(beta[1]), owned=True)


def _ln_rows(q: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    """``q`` as (rows, normalised values), in its own integer dtype (a view where it can be)."""
    q = np.asarray(q)
    if q.dtype.kind != "i":
        q = as_int64(q)
    axis %= q.ndim
    return q.reshape(math.prod(q.shape[:axis]), -1), axis


def layernorm(q: np.ndarray, e: int, gamma: Tensor, beta: Tensor, axis: int = -1, eps: float = 1e-5,
              bits: int = 8, saved: dict | None = None) -> Tensor:
    """LayerNormalization over ``axis..`` (ONNX), gamma / beta of the normalised shape. ``saved``
    (a dict) receives ``"stats"`` as in :func:`batchnorm_train`, for :func:`layernorm_backward`."""
    x, axis = _ln_rows(q, axis)
    xh = _Xhat(x[None], int(e), eps)
    if saved is not None:
        saved["stats"] = xh
    xhat = xh.values()[0]
    acc = xhat * as_int64(gamma[0]).reshape(1, -1)
    y = requantize(acc, int(gamma[1]) - XFRAC, bits, bias=as_int64(beta[0]).reshape(1, -1),
                   bias_exp=int(beta[1]), owned=True)
    return y[0].reshape(q.shape), y[1]


def layernorm_backward(q: np.ndarray, e: int, gamma: Tensor, dq: np.ndarray, de: int, axis: int = -1,
                       eps: float = 1e-5, bits: int = 8, rand: np.ndarray | None = None,
                       saved: dict | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dgamma, dbeta)``: dx at ``bits``; dgamma, dbeta (normalised shape) exact int64.
    ``saved``: the dict :func:`layernorm` filled for this ``q``, ``e``, ``eps``, ``axis``."""
    x, axis = _ln_rows(q, axis)
    dq2, gm = np.asarray(dq).reshape(x.shape), np.asarray(gamma[0]).reshape(1, -1)
    xh = saved["stats"] if saved is not None and "stats" in saved else _Xhat(x[None], int(e), eps)
    if all(a.dtype.kind == "i" and a.dtype.itemsize <= 2 for a in (dq2, gm)):
        prod = np.multiply(dq2, gm, dtype=np.int32)  # |dy gamma| <= 2^30: the int64 product's integers
    else:
        prod = as_int64(dq2) * as_int64(gm)
    gq, ge = requantize(prod, int(de) + int(gamma[1]), 16, owned=True)
    dy = as_int64(dq2)
    rand = check_rand(rand, q.shape)
    with xh.kept_values() as kept:  # read three times: two passes of _dx, then dgamma
        xhat = kept[0]
        (dq_, e_dx), _, _ = _dx(as_int64(gq)[None], xh, np.ones(x.shape[0], np.int64), ge - int(e), bits,
                                None if rand is None else rand.reshape((1,) + x.shape))
    dx = (dq_.reshape(q.shape), e_dx)
    shp = q.shape[axis:]
    dgamma = np.einsum("gs,gs->s", dy, xhat)  # the int64 sums of dy * xhat over the rows
    return dx, (dgamma.reshape(shp), int(de) - XFRAC), (dy.sum(axis=0).reshape(shp), int(de))

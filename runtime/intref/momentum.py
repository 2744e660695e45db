"""Momentum SGD on integer state (rct mode): docs/numerics.md "Momentum SGD in rct mode".

``torch.optim.SGD(momentum=mu, weight_decay=wd)`` (no dampening, not Nesterov) is
``d = g + wd w; v <- mu v + d; w <- w - lr v``. Here the parameter is ``(q, e)`` at ``bits``, the
velocity ``(vq, ve)`` at ``vbits`` (its own per-tensor exponent), the gradient the int64
accumulator ``gq 2^ge``, and every operation is an integer one (every rounding named):

1. ``g = shift_round(gq, s)`` (nearest), ``s = max(0, bitlen(max|gq|) - G_BITS)``, ``eg = ge + s``;
2. ``MU vq 2^(ve-30) + CA g 2^(eg-fa) [+ W q 2^(e-fw)]`` (the decay term only when ``W != 0``),
   brought to one exponent by ``core.align`` (headroom 60: the three-term sum stays within
   2^62), added, ``core.requantize``d to ``vbits`` (stochastic: draw 0); an all-zero velocity
   keeps its exponent;
3. the step on the ``2^-FRAC`` grid of q's last bit: ``U = -sat_shift(vq' lr_m, lr_k + ve' - e + FRAC)``;
4. ``q' = clip(q + shift_round(U, FRAC, draw 1), +-(2^(bits-1)-1))``.

The constants (``MU = round(mu 2^30)``, ``alpha = CA 2^-fa`` and ``wd = W 2^-fw`` with 30-bit
mantissas) come from the float32 attributes once per node (``rctc.runtime.kernels.int_update``).

Needs: :mod:`rctc.runtime.intref.core`, :func:`rctc.runtime.intref.adamw.sat_shift`.
Leaves: :func:`momentum_update`, a pure function of integers and random words; the C kernel
``rctc_momentum_update`` (native/csrc/kernels/momentum_update.c) mirrors it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rctc.runtime.intref.adamw import FRAC, sat_shift
from rctc.runtime.intref.core import absmax, align, as_int64, requantize, shift_round

#: magnitude bits the gradient is rounded to before its product with alpha
G_BITS = 24
#: fraction bits of the momentum constant
MU_BITS = 30
#: align's headroom: three aligned terms below 2^60 sum to less than 2^62
HEADROOM = 60


@dataclass(frozen=True)
class MomentumConsts:
    """The compile-time integers of one momentum update (docs/numerics.md)."""

    mu: int  # round(momentum 2^30), at most 2^30
    ca: int  # alpha = ca 2^-fa, 30 bits
    fa: int
    w: int  # weight_decay = w 2^-fw, 30 bits (0: no decay)
    fw: int

    def as_list(self) -> list[int]:
        return [self.mu, self.ca, self.fa, self.w, self.fw]


@dataclass
class MomentumResult:
    q: np.ndarray
    vq: np.ndarray
    ve: int
    u: np.ndarray  # the step before its rounding, on the 2^-FRAC grid (int64)
    saturated: int


def momentum_update(q: np.ndarray, e: int, bits: int, gq: np.ndarray, ge: int, vq: np.ndarray, ve: int,
                    vbits: int, lr_m: int, lr_k: int, c: MomentumConsts,
                    rand: tuple[np.ndarray, np.ndarray] | None = None) -> MomentumResult:
    """One momentum-SGD step of ``(q, e)`` and the velocity ``(vq, ve)`` from ``gq 2^ge``;
    ``rand`` the two uint32 word arrays (velocity, step), or None for nearest everywhere."""
    shape = q.shape
    r_v, r_q = rand if rand is not None else (None, None)
    g64 = as_int64(gq).reshape(shape)
    s = max(0, absmax(g64).bit_length() - G_BITS)
    g = shift_round(g64, s)
    eg = int(ge) + s
    terms = [(as_int64(vq).reshape(shape) * np.int64(c.mu), int(ve) - MU_BITS), (g * np.int64(c.ca), eg - c.fa)]
    if c.w:
        terms.append((as_int64(q) * np.int64(c.w), int(e) - c.fw))
    parts, ec = align(terms, headroom=HEADROOM)
    new_vq, new_ve = requantize(sum(parts[1:], parts[0]), ec, int(vbits), rand=r_v, owned=True)
    if not new_vq.any():
        new_ve = int(ve)
    u = -sat_shift(as_int64(new_vq) * np.int64(lr_m), int(lr_k) + new_ve - int(e) + FRAC)
    qmax = (1 << (int(bits) - 1)) - 1
    new = np.clip(as_int64(q) + shift_round(u, FRAC, r_q), -qmax, qmax)
    sat = int(np.count_nonzero(np.abs(new) == qmax))
    return MomentumResult(new.astype(q.dtype), new_vq.astype(vq.dtype), int(new_ve), u, sat)

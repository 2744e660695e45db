"""The RCT bitwidth controller's rule in exact integers (written once; C twin: native/csrc/kernels/bitwidth.c).

Needs: numpy and integers only; every backend (numpy reference, native C, microcontroller) must
reach the same decisions from the same statistics, so no float enters the rule.

Leaves, per parameter and step, the statistic ``UpdateStat(g, s, n)`` the update kernels record
in ``ctx.stats[STATS_KEY]``, the window that sums them, the decision and the rescale:

* ``n`` = the parameter's element count; ``s`` = how many new values sit at the clip limit
  ``+-(2^(bits-1) - 1)``.
* ``g`` = Gavg (mean |update| in units of the parameter's last bit) in fixed point with
  ``FRAC_BITS`` = F = 16 fraction bits, rounded down, capped at ``G_CAP`` = 2^62:

  - an update whose ``u`` is ``acc * m * 2^k`` with an integer ``acc`` (FusedIntUpdate without
    weight decay; ``m * 2^k`` the float64 scale, exactly): ``A = sum |acc_i|`` (exact) and
    ``g = min(floor(A * |m| * 2^(k + F) / n), G_CAP)`` (:func:`gavg_exact`);
  - an update whose ``u`` is float (IntSGDUpdate, the momentum updates, weight decay): from the
    float sum ``T = sum |u_i|`` as the kernel forms it, ``g = min(floor(T * 2^F / n), G_CAP)``
    exactly from T's value (:func:`gavg_of_float_sum`); a non-finite T gives ``G_CAP``.

  F = 16 resolves Gavg to 2^-16 LSB, 650x finer than the default ``--gavg-low`` 0.01; the cap
  (Gavg >= 2^46 LSB) is far past any clip. Bounds for C: ``A < 2^64`` (the C kernel refuses
  otherwise), ``|m| < 2^63``, so ``A |m| < 2^127`` fits 128 bits; a shift ``k + F > 126 -
  bitlen`` already exceeds the cap.
* Window (``Window``): over the steps since the last decision, ``count``, ``sum_g``, ``sum_s``,
  ``sum_n`` (C: sum_g in 128 bits, the others uint64, ``count * n < 2^64``).
* Decision (:func:`decide`), thresholds converted once (:func:`threshold_fixed`:
  ``min(round(x * 2^F), G_CAP + 1)``, half to even, exact; clamping at ``G_CAP + 1`` changes no
  decision, as every g is at most ``G_CAP``), in this order, for a non-empty window:

  1. ``sum_s * SAT_DEN > sum_n * SAT_NUM`` (more than 1% of values at the clip limit) and
     ``bits < max_bits``: SATURATION, one more bit, same exponent (the range doubles);
  2. ``sum_g < low * count`` (mean Gavg below ``--gavg-low``) and ``bits < max_bits``:
     UNDERFLOW, one more bit, ``q <<= 1``, ``exp -= 1`` (lossless);
  3. ``sum_g > high * count`` and ``bits > min_bits``: WASTED, one bit less, ``q`` halved rounding
     half to even and clipped to the new range, ``exp += 1`` (:func:`rescale`).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from rctc.fixedpoint import shift_left

FRAC_BITS = 16
G_CAP = 1 << 62
SAT_NUM, SAT_DEN = 1, 100
#: ctx.stats key of the per-parameter UpdateStat the update kernels record
STATS_KEY = "bitwidth_stats"


class UpdateStat(NamedTuple):
    """One step's statistic of one parameter: fixed-point Gavg ``g``, saturated count ``s``, size ``n``."""

    g: int
    s: int
    n: int


class Action(enum.IntEnum):
    """The controller's decisions (the C twin's RCTC_BW_* codes)."""

    KEEP = 0
    SATURATION = 1
    UNDERFLOW = 2
    WASTED = 3


REASONS = {Action.SATURATION: "saturation", Action.UNDERFLOW: "underflow", Action.WASTED: "wasted precision"}


def abs_sum(acc: np.ndarray) -> int:
    """``A = sum |acc_i|`` of an int64 array, exact for any values (below 2^32 elements)."""
    a = np.abs(np.asarray(acc, np.int64)).view(np.uint64)  # |INT64_MIN| reads as 2^63
    if a.size == 0:
        return 0
    if int(a.max()) * a.size < 1 << 64:  # the usual case: one uint64 sum cannot wrap
        return int(a.sum(dtype=np.uint64))
    hi = int(np.sum(a >> np.uint64(32), dtype=np.uint64))  # two 32-bit halves, each summed exactly
    lo = int(np.sum(a & np.uint64(0xFFFFFFFF), dtype=np.uint64))
    return (hi << 32) + lo


def gavg_exact(a: int, m: int, k: int, n: int) -> int:
    """``min(floor(a * |m| * 2^(k + F) / n), G_CAP)`` (0 for n = 0)."""
    num = a * abs(m)
    if n <= 0 or num == 0:
        return 0
    s = k + FRAC_BITS
    if s > 128:  # num >= 1, n < 2^64: past the cap
        return G_CAP
    g = (num << s) // n if s >= 0 else num // (n << -s)
    return min(g, G_CAP)


def gavg_of_scale(a: int, scale: float, n: int) -> int:
    """:func:`gavg_exact` with ``m * 2^k`` = the float ``scale``'s exact value."""
    num, den = float(scale).as_integer_ratio()  # den is a power of two
    return gavg_exact(a, num, -(den.bit_length() - 1), n)


def mean_abs_update(a: int, scale: float, n: int) -> float:
    """``a * |scale| / n`` rounded once to a float (for logs; the rule uses :func:`gavg_of_scale`)."""
    if n <= 0:
        return 0.0
    num, den = float(scale).as_integer_ratio()
    try:
        return a * abs(num) / (den * n)  # int / int: correctly rounded
    except OverflowError:
        return math.inf


def gavg_of_float_sum(total: float, n: int) -> int:
    """``min(floor(total * 2^F / n), G_CAP)`` from the float sum of |u| (exact in its value)."""
    if n <= 0:
        return 0
    if not math.isfinite(total):
        return G_CAP
    num, den = abs(float(total)).as_integer_ratio()
    return min((num << FRAC_BITS) // (den * n), G_CAP)


def threshold_fixed(x: float) -> int:
    """A Gavg threshold in fixed point, ``min(round(x * 2^F), G_CAP + 1)`` (exact, half to even)."""
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"Gavg threshold must be finite and >= 0, got {x}")
    return min(round(Fraction(x) * (1 << FRAC_BITS)), G_CAP + 1)


def to_float(g: int) -> float:
    """A fixed-point Gavg as a float, for logs and reports only."""
    return g / (1 << FRAC_BITS)


@dataclass
class Window:
    """Sums of the statistics since the last decision of one parameter."""

    count: int = 0
    sum_g: int = 0
    sum_s: int = 0
    sum_n: int = 0

    def observe(self, st: UpdateStat) -> None:
        self.count += 1
        self.sum_g += int(st.g)
        self.sum_s += int(st.s)
        self.sum_n += int(st.n)

    def as_list(self) -> list[int]:
        return [self.count, self.sum_g, self.sum_s, self.sum_n]

    def mean_gavg(self) -> float:
        """The window's mean Gavg as a float (logs only)."""
        return to_float(self.sum_g) / self.count if self.count else 0.0

    def saturation(self) -> float:
        """The window's saturated fraction as a float (logs only)."""
        return self.sum_s / self.sum_n if self.sum_n else 0.0


def decide(w: Window, low: int, high: int, bits: int, min_bits: int, max_bits: int) -> Action:
    """The decision for window ``w`` at ``bits`` (``low`` / ``high`` from :func:`threshold_fixed`)."""
    if w.count == 0:
        return Action.KEEP
    if w.sum_s * SAT_DEN > w.sum_n * SAT_NUM and bits < max_bits:
        return Action.SATURATION
    if w.sum_g < low * w.count and bits < max_bits:
        return Action.UNDERFLOW
    if w.sum_g > high * w.count and bits > min_bits:
        return Action.WASTED
    return Action.KEEP


def halve_even(q: np.ndarray) -> np.ndarray:
    """``q / 2`` rounded half to even, in integers (``np.rint(q / 2)`` for every integer q)."""
    q = np.asarray(q)
    h = q >> 1
    return h + (q & h & 1)


def rescale(action: Action, q: np.ndarray, bits: int, exp: int) -> tuple[np.ndarray, int, int]:
    """``(q, bits, exp)`` after ``action`` (q keeps its dtype; the dtype holds max_bits)."""
    if action == Action.SATURATION:
        return q, bits + 1, exp
    if action == Action.UNDERFLOW:
        return shift_left(q, 1, q.dtype), bits + 1, exp - 1
    if action == Action.WASTED:
        qmax = (1 << (bits - 2)) - 1
        return np.clip(halve_even(q), -qmax, qmax).astype(q.dtype), bits - 1, exp + 1
    return q, bits, exp

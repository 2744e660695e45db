"""InstanceNormalization on the integers: BatchNorm / LayerNorm's algorithm (:mod:`.norm`) with
one group per (sample, channel) over the spatial positions and gamma / beta per channel.

Needs :mod:`rctc.runtime.intref.norm` (``_groups_stats``, ``_Xhat``, ``_dx``: the exact sums, the
fixed-point rsqrt, the Q16 ``xhat`` and the backward multiplier, written once there); nothing
here is a second algorithm, only the grouping. Rounding and error bounds are norm's:
forward ``<= 2^(e_out-1) + |gamma| 2^-16``; backward one rounding of ``dx`` (stochastic with
``rand``), ``dgamma = sum dy xhat`` (``e_dy - 16``) and ``dbeta = sum dy`` (``e_dy``) per channel
as exact int64 accumulators.
"""

from __future__ import annotations

import numpy as np

from rctc.runtime.intref.core import as_int64, check_rand, requantize
from rctc.runtime.intref.norm import XFRAC, _dx, _groups_stats, _Xhat

__all__ = ["instancenorm", "instancenorm_backward"]

Tensor = tuple[np.ndarray, int]


def _rows(q: np.ndarray) -> np.ndarray:
    """(B, C, spatial...) -> (1, B * C, spatial) int64: norm's (batch, group, values) layout, one
    group per (sample, channel)."""
    if q.ndim < 3:
        raise ValueError(f"InstanceNormalization needs N x C x spatial..., got shape {q.shape}")
    return as_int64(q).reshape(1, q.shape[0] * q.shape[1], -1)


def instancenorm(q: np.ndarray, e: int, gamma: Tensor, beta: Tensor, eps: float = 1e-5, bits: int = 8) -> Tensor:
    """``gamma_c (x - mean) / sqrt(var + eps) + beta_c`` per (sample, channel), one rounding."""
    b, c = q.shape[:2]
    xhat, *_ = _groups_stats(_rows(q), int(e), eps)
    acc = xhat.reshape(b, c, -1) * as_int64(gamma[0]).reshape(1, c, 1)
    y = requantize(acc, int(gamma[1]) - XFRAC, bits, bias=as_int64(beta[0]).reshape(1, c, 1), bias_exp=int(beta[1]))
    return y[0].reshape(q.shape), y[1]


def instancenorm_backward(q: np.ndarray, e: int, gamma: Tensor, dq: np.ndarray, de: int, eps: float = 1e-5,
                          bits: int = 8, rand: np.ndarray | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dgamma, dbeta)``: dx at ``bits``; dgamma / dbeta per channel, exact int64."""
    b, c = q.shape[:2]
    x = _rows(q)
    dy = as_int64(dq).reshape(x.shape)
    xh = _Xhat(x, int(e), eps)
    gm = np.tile(as_int64(gamma[0]).reshape(-1), b)  # group r = (sample, channel r % C)
    rand = check_rand(rand, q.shape)
    (dq_, e_dx), _, _ = _dx(dy, xh, gm, int(de) + int(gamma[1]) - int(e), bits,
                            None if rand is None else rand.reshape(x.shape))
    xhat = xh.values()
    dx = (dq_.reshape(q.shape), e_dx)
    per = (dy * xhat).reshape(b, c, -1).sum(axis=(0, 2)), dy.reshape(b, c, -1).sum(axis=(0, 2))
    return dx, (per[0], int(de) - XFRAC), (per[1], int(de))

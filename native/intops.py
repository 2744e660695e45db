"""The C twins of :mod:`rctc.runtime.intref` as one numpy-facing class, :class:`IntOps`.

Needs: the kernel library (``rctc_intops.h``, built by :mod:`rctc.native.build`) and
:mod:`rctc.native.intops_base` (loader, core, pointwise, arithmetic). Leaves: every method
takes its intref function's arguments and returns the same arrays, dtypes and exponents (the
tests check this bit for bit); pools, normalisations, the exponential family and erf / GELU are
added here. Layout changes a kernel needs (reduced axes last, BatchNorm's channel rows) are
views or copies made here; the C kernels see contiguous buffers and never allocate.
"""

from __future__ import annotations

import math
from ctypes import c_int, c_int64

import numpy as np

from rctc.native.intops_base import BaseOps, PoolGeom, Tensor, _int, _p, _rand, _ref
from rctc.runtime.intref.core import exact_ratio, fixed_point, qmax, storage_dtype

#: RCTC_IQ_NORM_CHUNK of rctc_intops.h: the elements a streamed normalisation forms at a time
NORM_CHUNK = 256

__all__ = ["IntOps", "batchnorm_train_mt_work"]


def batchnorm_train_mt_work(c: int, bits: int) -> int:
    """int64 words of ``rctc_iq_batchnorm_train_mt``'s work for ``c`` channels and ``bits``-bit outputs:
    10 per channel (statistics, extremes, status) and a 256-entry table of outputs per channel."""
    return 10 * c + 32 * c * np.dtype(storage_dtype(bits)).itemsize


Pair = tuple[int, int]
Pads = tuple[int, int, int, int]


def _geom(shape: tuple[int, ...], k: Pair, s: Pair, p: Pads) -> PoolGeom:
    n, c, h, w = shape
    oh, ow = (h + p[0] + p[2] - k[0]) // s[0] + 1, (w + p[1] + p[3] - k[1]) // s[1] + 1
    return PoolGeom(n, c, h, w, k[0], k[1], s[0], s[1], p[0], p[1], p[2], p[3], oh, ow)


def _eps(eps: float) -> tuple[int, int]:
    n, d = exact_ratio(eps)
    return n, d.bit_length() - 1


def _bits(bits: int) -> int:
    qmax(bits)
    return int(bits)


def _tq(t: Tensor, what: str) -> tuple[np.ndarray, int, int]:
    q, w = _int(t[0], what)
    return q, w, int(t[1])


class IntOps(BaseOps):
    """Every intref algorithm, computed by its C kernel."""

    # ---- pools ----------------------------------------------------------------------------------
    def maxpool2d(self, q: np.ndarray, e: int, kernel: Pair, strides: Pair = (1, 1), pads: Pads = (0, 0, 0, 0),
                  nthreads: int = 1) -> Tensor:
        x, w = _int(q)
        g = _geom(x.shape, kernel, strides, pads)
        out = np.empty((g.n, g.c, g.oh, g.ow), x.dtype)
        self.lib.rctc_iq_maxpool2d(_ref(g), _p(x), w, _p(out), nthreads)
        return out, int(e)

    def maxpool2d_backward(self, q, e, dq, de, kernel: Pair, strides: Pair = (1, 1), pads: Pads = (0, 0, 0, 0),
                           bits: int = 8, rand=None) -> Tensor:
        x, w = _int(q)
        d, dw = _int(dq)
        g = _geom(x.shape, kernel, strides, pads)
        work = np.empty(max(1, x.size), np.int64)
        return self._rq("rctc_iq_maxpool2d_backward", x.shape, bits, _ref(g), _p(x), w, _p(d), dw, int(de), bits,
                        _p(_rand(rand, x.shape)), _p(work))

    def avgpool2d(self, q, e, kernel: Pair, strides: Pair = (1, 1), pads: Pads = (0, 0, 0, 0),
                  count_include_pad: bool = False, bits: int = 8) -> Tensor:
        x, w = _int(q)
        g = _geom(x.shape, kernel, strides, pads)
        work = np.empty(max(1, g.n * g.c * g.oh * g.ow), np.int64)
        return self._rq("rctc_iq_avgpool2d", (g.n, g.c, g.oh, g.ow), bits, _ref(g), _p(x), w, int(e),
                        int(count_include_pad), bits, _p(work))

    def avgpool2d_backward(self, dq, de, in_shape, kernel: Pair, strides: Pair = (1, 1), pads: Pads = (0, 0, 0, 0),
                           count_include_pad: bool = False, bits: int = 8, rand=None) -> Tensor:
        d, dw = _int(dq)
        in_shape = tuple(in_shape)
        g = _geom(in_shape, kernel, strides, pads)
        work = np.empty(max(1, math.prod(in_shape)), np.int64)
        return self._rq("rctc_iq_avgpool2d_backward", in_shape, bits, _ref(g), _p(d), dw, int(de),
                        int(count_include_pad), bits, _p(_rand(rand, in_shape)), _p(work))

    def reduce_mean(self, q, e, axes: tuple[int, ...], keepdims: bool = True, bits: int = 8) -> Tensor:
        x, w = _int(q)
        axes = tuple(sorted(a % x.ndim for a in axes))
        kept = [i for i in range(x.ndim) if i not in axes]
        xt = np.ascontiguousarray(np.transpose(x, kept + list(axes)))
        outer, red = math.prod(x.shape[i] for i in kept), math.prod(x.shape[i] for i in axes)
        shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape)) if keepdims else \
            tuple(x.shape[i] for i in kept)
        work = np.empty(max(1, outer), np.int64)
        return self._rq("rctc_iq_reduce_mean", shape, bits, outer, red, 1, _p(xt), w, int(e), bits, _p(work))

    def reduce_mean_backward(self, dq, de, in_shape, axes: tuple[int, ...], keepdims: bool = True, bits: int = 8,
                             rand=None) -> Tensor:
        d, dw = _int(dq)
        in_shape = tuple(in_shape)
        nd = len(in_shape)
        axes = tuple(sorted(a % nd for a in axes))
        kept = [i for i in range(nd) if i not in axes]
        perm = kept + list(axes)
        t_shape = tuple(in_shape[i] for i in perm)
        rand = _rand(rand, in_shape)
        rt = None if rand is None else np.ascontiguousarray(np.transpose(rand, perm))
        outer, red = math.prod(in_shape[i] for i in kept), math.prod(in_shape[i] for i in axes)
        work = np.empty(max(1, math.prod(in_shape)), np.int64)
        out, eo = self._rq("rctc_iq_reduce_mean_backward", t_shape, bits, outer, red, 1, _p(d), dw, int(de), bits,
                           _p(rt), _p(work))
        return np.ascontiguousarray(np.transpose(out, np.argsort(perm))), eo

    def global_avgpool(self, q, e, bits: int = 8) -> Tensor:
        return self.reduce_mean(q, e, tuple(range(2, np.ndim(q))), True, bits)

    def global_avgpool_backward(self, dq, de, in_shape, bits: int = 8, rand=None) -> Tensor:
        return self.reduce_mean_backward(dq, de, in_shape, tuple(range(2, len(in_shape))), True, bits, rand)

    # ---- normalisation --------------------------------------------------------------------------
    def batchnorm_train(self, q, e, gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor,
                        eps: float = 1e-5, momentum: float = 0.9, bits: int = 8,
                        threads: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``threads``: run ``rctc_iq_batchnorm_train_mt`` on that many (else the 1-thread entry)."""
        x, w = _int(q)
        b, c, s = x.shape[0], x.shape[1], math.prod(x.shape[2:])
        g, gw, ge = _tq(gamma, "gamma")
        bt, bw, be = _tq(beta, "beta")
        rm = np.ascontiguousarray(np.asarray(running_mean[0]).astype(np.int16))
        rv = np.ascontiguousarray(np.asarray(running_var[0]).astype(np.int16))
        work = np.empty(9 * c + NORM_CHUNK if threads is None else batchnorm_train_mt_work(c, bits), np.int64)
        rm_out, rv_out = np.empty(c, np.int16), np.empty(c, np.int16)
        out = np.empty(x.shape, storage_dtype(bits))
        ey, rme, rve = c_int(), c_int(), c_int()
        head = ("rctc_iq_batchnorm_train",) if threads is None else ("rctc_iq_batchnorm_train_mt", int(threads))
        self._call(*head, b, c, s, _p(x), w, int(e), _p(g), gw, ge, _p(bt), bw, be, _p(rm),
                   int(running_mean[1]), _p(rv), int(running_var[1]), *_eps(eps), fixed_point(momentum, 16),
                   _bits(bits), _p(work), _p(out), _ref(ey), _p(rm_out), _ref(rme), _p(rv_out), _ref(rve))
        return (out, ey.value), (rm_out, rme.value), (rv_out, rve.value)

    def batchnorm_backward(self, q, e, gamma: Tensor, dq, de, eps: float = 1e-5, bits: int = 8,
                           rand=None, threads: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``threads``: run ``rctc_iq_batchnorm_backward_mt`` on that many (else the 1-thread entry)."""
        x, w = _int(q)
        d, dw = _int(dq)
        b, c, s = x.shape[0], x.shape[1], math.prod(x.shape[2:])
        g, gw, ge = _tq(gamma, "gamma")
        work = np.empty(10 * c + x.size, np.int64)  # also the _mt kernel's B*C*S + 10 C
        out = np.empty(x.shape, storage_dtype(bits))
        dg, db = np.empty(c, np.int64), np.empty(c, np.int64)
        ex = c_int()
        head = ("rctc_iq_batchnorm_backward",) if threads is None else ("rctc_iq_batchnorm_backward_mt", int(threads))
        self._call(*head, b, c, s, _p(x), w, int(e), _p(g), gw, ge, _p(d), dw, int(de),
                   *_eps(eps), _bits(bits), _p(_rand(rand, x.shape)), _p(work), _p(out), _ref(ex), _p(dg), _p(db))
        return (out, ex.value), (dg, int(de) - 16), (db, int(de))

    def batchnorm_inference(self, q, e, gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor,
                            eps: float = 1e-5, bits: int = 8) -> Tensor:
        x, w = _int(q)
        b, c, s = x.shape[0], x.shape[1], math.prod(x.shape[2:])
        g, gw, ge = _tq(gamma, "gamma")
        bt, bw, be = _tq(beta, "beta")
        rm, rmw, rme = _tq(running_mean, "running_mean")
        rv, rvw, rve = _tq(running_var, "running_var")
        work = np.empty(x.size + 4 * c, np.int64)
        return self._rq("rctc_iq_batchnorm_inference", x.shape, bits, b, c, s, _p(x), w, int(e), _p(g), gw, ge,
                        _p(bt), bw, be, _p(rm), rmw, rme, _p(rv), rvw, rve, *_eps(eps), bits, _p(work))

    def layernorm(self, q, e, gamma: Tensor, beta: Tensor, axis: int = -1, eps: float = 1e-5,
                  bits: int = 8, threads: int | None = None) -> Tensor:
        """``threads``: run ``rctc_iq_layernorm_mt`` on that many (else the 1-thread entry)."""
        x, w = _int(q)
        axis %= x.ndim
        rows, n = math.prod(x.shape[:axis]), math.prod(x.shape[axis:])
        g, gw, ge = _tq(gamma, "gamma")
        bt, bw, be = _tq(beta, "beta")
        work = np.empty(2 * x.size + 4 * rows, np.int64)
        name, lead = ("rctc_iq_layernorm", ()) if threads is None else ("rctc_iq_layernorm_mt", (int(threads),))
        return self._rq(name, x.shape, bits, *lead, rows, n, _p(x), w, int(e), _p(g), gw, ge, _p(bt), bw, be,
                        *_eps(eps), bits, _p(work))

    def layernorm_backward(self, q, e, gamma: Tensor, dq, de, axis: int = -1, eps: float = 1e-5, bits: int = 8,
                           rand=None, threads: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``threads``: run ``rctc_iq_layernorm_backward_mt`` on that many (else the 1-thread entry)."""
        x, w = _int(q)
        d, dw = _int(dq)
        axis %= x.ndim
        rows, n = math.prod(x.shape[:axis]), math.prod(x.shape[axis:])
        g, gw, ge = _tq(gamma, "gamma")
        work = np.empty(5 * x.size + 8 * rows, np.int64)
        out = np.empty(x.shape, storage_dtype(bits))
        dg, db = np.empty(x.shape[axis:], np.int64), np.empty(x.shape[axis:], np.int64)
        ex = c_int()
        head = ("rctc_iq_layernorm_backward",) if threads is None else ("rctc_iq_layernorm_backward_mt", int(threads))
        self._call(*head, rows, n, _p(x), w, int(e), _p(g), gw, ge, _p(d), dw, int(de),
                   *_eps(eps), _bits(bits), _p(_rand(rand, x.shape)), _p(work), _p(out), _ref(ex), _p(dg), _p(db))
        return (out, ex.value), (dg, int(de) - 16), (db, int(de))

    # ---- exponential family ---------------------------------------------------------------------
    def to_fixed(self, q, e, frac: int = 16) -> np.ndarray:
        x, w = _int(q)
        out = np.empty(x.shape, np.int64)
        self._call("rctc_iq_to_fixed", x.size, _p(x), w, int(e), frac, _p(out))
        return out

    def _elementwise64(self, name: str, x) -> np.ndarray:
        x = np.ascontiguousarray(_int(x)[0].astype(np.int64, copy=False))
        out = np.empty(x.shape, np.int64)
        self._call(name, x.size, _p(x), _p(out))
        return out

    def iexp(self, x) -> np.ndarray:
        return self._elementwise64("rctc_iq_iexp", x)

    def ilog2(self, v) -> np.ndarray:
        return self._elementwise64("rctc_iq_ilog2", v)

    def ierf(self, u) -> np.ndarray:
        return self._elementwise64("rctc_iq_ierf", u)

    def erf_as(self, u) -> np.ndarray:
        return self._elementwise64("rctc_iq_erf_as", u)

    def _fwd(self, name: str, q, e, bits: int, *extra) -> Tensor:
        x, w = _int(q)
        work = np.empty(max(1, x.size), np.int64)
        return self._rq(name, x.shape, bits, x.size, _p(x), w, int(e), bits, *extra, _p(work))

    def _bwd(self, name: str, q, e, dq, de, bits: int, rand) -> Tensor:
        x, w = _int(q)
        d, dw = _int(dq)
        work = np.empty(max(1, x.size), np.int64)
        return self._rq(name, d.shape, bits, x.size, _p(x), w, int(e), _p(d), dw, int(de), bits,
                        _p(_rand(rand, d.shape)), _p(work))

    def exp(self, q, e, bits: int = 8) -> Tensor:
        return self._fwd("rctc_iq_exp", q, e, bits)

    def exp_backward(self, q, e, dq, de, bits: int = 8, rand=None) -> Tensor:
        return self._bwd("rctc_iq_exp_backward", q, e, dq, de, bits, rand)

    def sigmoid(self, q, e, bits: int = 8) -> Tensor:
        return self._fwd("rctc_iq_sigmoid", q, e, bits)

    def sigmoid_backward(self, q, e, dq, de, bits: int = 8, rand=None) -> Tensor:
        return self._bwd("rctc_iq_sigmoid_backward", q, e, dq, de, bits, rand)

    def tanh(self, q, e, bits: int = 8) -> Tensor:
        return self._fwd("rctc_iq_tanh", q, e, bits)

    def tanh_backward(self, q, e, dq, de, bits: int = 8, rand=None) -> Tensor:
        return self._bwd("rctc_iq_tanh_backward", q, e, dq, de, bits, rand)

    def erf(self, q, e, bits: int = 8) -> Tensor:
        return self._fwd("rctc_iq_erf", q, e, bits)

    def erf_backward(self, q, e, dq, de, bits: int = 8, rand=None) -> Tensor:
        return self._bwd("rctc_iq_erf_backward", q, e, dq, de, bits, rand)

    def gelu(self, q, e, bits: int = 8, method: str = "ibert") -> Tensor:
        if method not in ("ibert", "as"):
            raise ValueError(f"gelu: method must be 'ibert' or 'as', got {method!r}")
        return self._fwd("rctc_iq_gelu", q, e, bits, int(method == "as"))

    def gelu_backward(self, q, e, dq, de, bits: int = 8, rand=None) -> Tensor:
        return self._bwd("rctc_iq_gelu_backward", q, e, dq, de, bits, rand)

    @staticmethod
    def _axis3(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
        axis %= len(shape)
        return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])

    def softmax(self, q, e, axis: int = -1, bits: int = 8) -> Tensor:
        x, w = _int(q)
        work = np.empty(max(1, 2 * x.size), np.int64)
        return self._rq("rctc_iq_softmax", x.shape, bits, *self._axis3(x.shape, axis), _p(x), w, int(e), bits,
                        _p(work))

    def softmax_backward(self, qy, ey, dq, de, axis: int = -1, bits: int = 8, rand=None) -> Tensor:
        y, yw = _int(qy)
        d, dw = _int(dq)
        work = np.empty(max(1, 2 * y.size), np.int64)
        return self._rq("rctc_iq_softmax_backward", y.shape, bits, *self._axis3(y.shape, axis), _p(y), yw, int(ey),
                        _p(d), dw, int(de), bits, _p(_rand(rand, y.shape)), _p(work))

    def softmax_cross_entropy(self, q, e, labels) -> tuple[int, int]:
        x, w = _int(q)
        lab = np.ascontiguousarray(np.asarray(labels).astype(np.int64))
        work = np.empty(max(1, 2 * x.size), np.int64)
        loss, el = c_int64(), c_int()
        self._call("rctc_iq_softmax_cross_entropy", x.shape[0], x.shape[1], _p(x), w, int(e), _p(lab), _p(work),
                   _ref(loss), _ref(el))
        return int(loss.value), el.value

    def softmax_cross_entropy_backward(self, q, e, labels, bits: int = 8, rand=None) -> Tensor:
        x, w = _int(q)
        lab = np.ascontiguousarray(np.asarray(labels).astype(np.int64))
        work = np.empty(max(1, 2 * x.size), np.int64)
        return self._rq("rctc_iq_softmax_cross_entropy_backward", x.shape, bits, x.shape[0], x.shape[1], _p(x), w,
                        int(e), _p(lab), bits, _p(_rand(rand, x.shape)), _p(work))

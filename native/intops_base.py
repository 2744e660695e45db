"""Typed numpy wrappers of the C integer kernels (``rctc_intops.h``): the C twins of
:mod:`rctc.runtime.intref`, with intref's own signatures and results.

Needs: the kernel library (:func:`rctc.native.build.load_library`). Leaves: each method takes
the arguments its intref function takes and returns the same arrays, dtypes and exponents;
compile-time constants (fixed-point slopes, exact ratios of float attributes, reciprocals of
static sizes) are prepared here with intref's own helpers, exactly as a code generator would;
C status codes become intref's exceptions (``OverflowError`` / ``ValueError``); every output
and scratch buffer is allocated here, the C kernels never allocate.
"""

from __future__ import annotations

import ctypes
import math
import re
from collections.abc import Sequence
from ctypes import c_int, c_int64, c_size_t, c_uint32, c_uint64, c_void_p

import numpy as np

from rctc.native.build import INCLUDE, load_library
from rctc.runtime.intref.core import exact_ratio, fixed_point, qmax, storage_dtype

Tensor = tuple[np.ndarray, int]
_WIDTHS = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}


class I128(ctypes.Structure):
    _fields_ = [("lo", c_uint64), ("hi", c_uint64)]


def i128(v: int) -> I128:
    u = v & ((1 << 128) - 1)
    return I128(u & ((1 << 64) - 1), u >> 64)


def from_hilo(hi: int, lo: int) -> int:
    v = (hi << 64) | lo
    return v - (1 << 128) if hi >> 63 else v


_CTYPES = {"size_t": c_size_t, "int": c_int, "int64_t": c_int64, "uint64_t": c_uint64, "uint32_t": c_uint32,
           "rctc_i128": I128}


def _prototypes(header: str) -> dict[str, tuple[type | None, list[type]]]:
    """``name -> (restype, argtypes)`` of every function in ``rctc_intops.h`` (pointers as void *)."""
    text = re.sub(r"/\*.*?\*/", " ", header, flags=re.S)
    protos: dict[str, tuple[type | None, list[type]]] = {}
    for ret, name, args in re.findall(r"^\s*(\w+)\s+(rctc_\w+)\(([^)]*)\);", text, flags=re.M):
        types = []
        for arg in (a.strip() for a in args.split(",")):
            if arg == "void":
                continue
            decl = arg.rsplit(" ", 1)[0] if "*" not in arg else "*"
            types.append(c_void_p if "*" in arg else _CTYPES[decl.replace("const ", "").strip()])
        protos[name] = (None if ret == "void" else _CTYPES[ret], types)
    return protos


class PoolGeom(ctypes.Structure):
    _fields_ = [(n, c_int) for n in ("n", "c", "h", "w", "kh", "kw", "sh", "sw", "pt", "pl", "pb", "pr", "oh", "ow")]


def _int(x: np.ndarray, what: str = "input") -> tuple[np.ndarray, int]:
    """``x`` C-contiguous in a signed storage C reads (unsigned <= 32-bit widened as intref)."""
    x = np.asarray(x)
    if x.dtype.kind == "u" and x.dtype.itemsize <= 4:
        x = x.astype(np.int64)
    if x.dtype.kind != "i":
        raise TypeError(f"intref: expected an integer array for {what}, got dtype {x.dtype}")
    return np.ascontiguousarray(x), x.dtype.itemsize


def _rand(rand: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if rand is None:
        return None
    rand = np.asarray(rand)
    if rand.dtype != np.uint32 or rand.shape != tuple(shape):
        raise ValueError(f"rand must be uint32 of shape {tuple(shape)}, got {rand.dtype} {rand.shape}")
    return np.ascontiguousarray(rand)


def _p(a: np.ndarray | None) -> c_void_p | None:
    return None if a is None else c_void_p(a.ctypes.data)


def _ref(x: ctypes._SimpleCData) -> int:
    return ctypes.addressof(x)


def _ratio(v: float) -> tuple[int, int]:
    n, d = exact_ratio(v)
    return n, d.bit_length() - 1


def _mant_exp(v: float) -> tuple[int, int]:
    """A float32 value as ``num / 2^log2den`` with ``|num| < 2^25`` (``log2den < 0`` for large values)."""
    n, lg = _ratio(v)
    tz = (n & -n).bit_length() - 1 if n else 0
    return n >> tz, lg - tz


def broadcast_strides(out_shape: tuple[int, ...], shape: tuple[int, ...]) -> list[int]:
    """Element strides of a C-contiguous operand of ``shape`` read at every index of
    ``out_shape`` (numpy broadcasting: shapes aligned on the right, 0 along a broadcast axis);
    also where an element of ``out_shape`` lands when summed back to ``shape`` (reduce_to)."""
    lead = len(out_shape) - len(shape)
    cs = [math.prod(shape[i + 1:]) for i in range(len(shape))]
    return [0] * lead + [0 if n == 1 else cs[i] for i, n in enumerate(shape)]


def _check(rc: int, what: str) -> None:
    if rc == -1:
        raise OverflowError(f"{what}: an intermediate exceeds the integer range (intref's OverflowError)")
    if rc == -2:
        raise ValueError(f"{what}: argument outside the algorithm's domain")


class BaseOps:
    """Loader, core, pointwise and arithmetic kernels (see :class:`rctc.native.intops_nn.IntOps`)."""

    def __init__(self, lib: ctypes.CDLL | None = None) -> None:
        self.lib = load_library() if lib is None else lib
        for name, (res, args) in _prototypes((INCLUDE / "rctc_intops.h").read_text()).items():
            fn = getattr(self.lib, name, None)
            if fn is not None:  # the x86 variants exist only in x86-64 builds
                fn.restype, fn.argtypes = res, args

    def _call(self, name: str, *args) -> int:
        rc = getattr(self.lib, name)(*args)
        _check(rc or 0, name.removeprefix("rctc_iq_"))
        return rc

    def _rq(self, name: str, shape: tuple[int, ...], bits: int, *args) -> Tensor:
        """Call a kernel whose last two arguments are (out, e_out); out is bits-bit storage."""
        qmax(bits)
        out = np.empty(shape, storage_dtype(bits))
        e = c_int(0)
        self._call(name, *args, _p(out), _ref(e))
        return out, e.value

    # ---- 128-bit helpers (tests) ----------------------------------------------------------------
    def i128_mul(self, a: int, b: int) -> int:
        hi, lo = c_uint64(), c_uint64()
        self.lib.rctc_i128_test_mul(a, b, _ref(hi), _ref(lo))
        return from_hilo(hi.value, lo.value)

    def i128_divfloor(self, a: int, d: int) -> int:
        x, hi, lo = i128(a), c_uint64(), c_uint64()
        self.lib.rctc_i128_test_divfloor(x.hi, x.lo, d, _ref(hi), _ref(lo))
        return from_hilo(hi.value, lo.value)

    def i128_rshift_round(self, a: int, s: int) -> int:
        x, hi, lo = i128(a), c_uint64(), c_uint64()
        self.lib.rctc_i128_test_rshift_round(x.hi, x.lo, s, _ref(hi), _ref(lo))
        return from_hilo(hi.value, lo.value)

    def i128_bitlen(self, a: int) -> int:
        x = i128(a)
        return int(self.lib.rctc_i128_test_bitlen(x.hi, x.lo))

    # ---- core -----------------------------------------------------------------------------------
    def absmax(self, x: np.ndarray) -> int:
        x = np.ascontiguousarray(_int(x)[0].astype(np.int64, copy=False))
        return int(self.lib.rctc_iq_absmax(x.size, _p(x)))

    def storage_dtype(self, bits: int) -> np.dtype:
        qmax(bits)
        return np.dtype(_WIDTHS[int(self.lib.rctc_iq_width(bits))])

    def clip_bounds(self, lo: float | None, hi: float | None, e: int) -> tuple[int | None, int | None]:
        lq, hq = c_int64(), c_int64()
        self.lib.rctc_iq_clip_bounds(int(e), *self._bounds(lo, hi), _ref(lq), _ref(hq))
        return (None if lo is None else lq.value), (None if hi is None else hq.value)

    def requant_shift(self, m: int, bits: int, stochastic: bool) -> int:
        qmax(bits)
        return int(self.lib.rctc_iq_requant_shift(m, bits, int(stochastic)))

    def shift_round(self, x: np.ndarray, s: int, rand: np.ndarray | None = None) -> np.ndarray:
        if s < 0:
            raise ValueError(f"shift_round: s must be >= 0, got {s}")
        x = np.ascontiguousarray(_int(x)[0].astype(np.int64, copy=False))
        out = np.empty_like(x)
        self._call("rctc_iq_shift_round", x.size, _p(x), s, _p(_rand(rand, x.shape)), _p(out))
        return out

    def shift(self, x: np.ndarray, k: int, rand: np.ndarray | None = None) -> np.ndarray:
        x, w = _int(x)
        out = np.empty(x.shape, np.int64)
        self._call("rctc_iq_shift", x.size, _p(x), w, k, _p(_rand(rand, x.shape)), _p(out))
        return out

    def requantize(self, acc: np.ndarray, e_acc: int, bits: int, *, bias: np.ndarray | None = None,
                   bias_exp: int | None = None, rand: np.ndarray | None = None) -> Tensor:
        acc = np.ascontiguousarray(_int(acc)[0].astype(np.int64, copy=False))
        rand = _rand(rand, acc.shape)
        if bias is None:
            return self._rq("rctc_iq_requantize", acc.shape, bits, acc.size, _p(acc), e_acc, bits, _p(rand))
        b, bw = _int(bias, "bias")
        axes = [i for i, n in enumerate(b.shape) if n != 1]
        axis = axes[0] + acc.ndim - b.ndim if axes else acc.ndim - 1
        if len(axes) > 1 or b.ndim > acc.ndim:
            raise ValueError("requantize: the native kernel takes a bias along one axis")
        outer, ch = math.prod(acc.shape[:axis]), acc.shape[axis]
        if b.size not in (1, ch):
            raise ValueError("requantize: bias does not broadcast")
        b = np.ascontiguousarray(np.broadcast_to(b.reshape(-1), (ch,)))
        acc = acc.copy()  # the bias is added in place
        return self._rq("rctc_iq_requantize_bias", acc.shape, bits, outer, ch, math.prod(acc.shape[axis + 1:]),
                        _p(acc), e_acc, _p(b), bw, int(bias_exp), bits, _p(rand))

    def align(self, tensors: Sequence[Tensor], headroom: int = 61) -> tuple[list[np.ndarray], int]:
        ints = [_int(q) for q, _ in tensors]
        m = (c_uint64 * len(ints))(*[int(np.abs(q.astype(np.int64)).max()) if q.size else 0 for q, _ in ints])
        exps = (c_int * len(ints))(*[int(e) for _, e in tensors])
        ec = int(self.lib.rctc_iq_align_exp(len(ints), m, exps, headroom))
        return [self.shift(q, int(e) - ec) for (q, _), (_, e) in zip(ints, tensors)], ec

    def recip_fixed(self, d: int, frac_bits: int) -> int:
        if d <= 0:
            raise ValueError(f"recip_fixed: divisor must be positive, got {d}")
        return int(self.lib.rctc_iq_recip_fixed(d, frac_bits))

    def isqrt(self, v: int) -> int:
        return int(self.lib.rctc_iq_isqrt(v))

    def rsqrt_fixed(self, v: int) -> tuple[int, int]:
        m, f = c_uint64(), c_int()
        self._call("rctc_iq_rsqrt_fixed", i128(int(v)), _ref(m), _ref(f))
        return int(m.value), int(f.value)

    # ---- pointwise ------------------------------------------------------------------------------
    def relu(self, q: np.ndarray, e: int) -> Tensor:
        x, w = _int(q)
        out = np.empty_like(x)
        self.lib.rctc_iq_relu(x.size, _p(x), w, _p(out))
        return out, int(e)

    def has_avx2(self) -> bool:
        """Whether this build and CPU run the AVX2 variants (rctc_isa_available, RCTC_ISA_AVX2)."""
        return hasattr(self.lib, "rctc_iq_relu_s8_avx2") and bool(self.lib.rctc_isa_available() & 2)

    def relu_s8(self, q: np.ndarray, variant: str, dq: np.ndarray | None = None) -> np.ndarray:
        """One named variant ("portable", "avx2") of the int8 ReLU (or, with dq, its backward)."""
        x = np.ascontiguousarray(q, np.int8)
        out = np.empty_like(x)
        if dq is None:
            getattr(self.lib, f"rctc_iq_relu_s8_{variant}")(x.size, _p(x), _p(out))
        else:
            d = np.ascontiguousarray(dq, np.int8)
            getattr(self.lib, f"rctc_iq_relu_backward_s8_{variant}")(x.size, _p(x), _p(d), _p(out))
        return out

    def round_s8(self, acc: np.ndarray, s: int, rand: np.ndarray | None, variant: str) -> np.ndarray:
        """One named variant of requantize's int8 rounding loop (results must fit int8)."""
        acc = np.ascontiguousarray(acc, np.int64)
        out = np.empty(acc.shape, np.int8)
        getattr(self.lib, f"rctc_iq_round_s8_{variant}")(acc.size, _p(acc), s, _p(_rand(rand, acc.shape)), _p(out))
        return out

    def relu_backward(self, q: np.ndarray, e: int, dq: np.ndarray, de: int) -> Tensor:
        x, w = _int(q)
        d, dw = _int(dq)
        out = np.empty_like(d)
        self.lib.rctc_iq_relu_backward(x.size, _p(x), w, _p(d), dw, _p(out))
        return out, int(de)

    @staticmethod
    def _bounds(lo: float | None, hi: float | None) -> tuple[int, int, int, int, int, int]:
        ln, ll = _mant_exp(lo) if lo is not None else (0, 0)
        hn, hl = _mant_exp(hi) if hi is not None else (0, 0)
        return int(lo is not None), ln, ll, int(hi is not None), hn, hl

    def clip(self, q: np.ndarray, e: int, lo: float | None = None, hi: float | None = None) -> Tensor:
        x, w = _int(q)
        out = np.empty_like(x)
        self.lib.rctc_iq_clip(x.size, _p(x), w, int(e), *self._bounds(lo, hi), _p(out))
        return out, int(e)

    def clip_backward(self, q: np.ndarray, e: int, dq: np.ndarray, de: int, lo: float | None = None,
                      hi: float | None = None) -> Tensor:
        x, w = _int(q)
        d, dw = _int(dq)
        out = np.empty_like(d)
        self.lib.rctc_iq_clip_backward(x.size, _p(x), w, int(e), *self._bounds(lo, hi), _p(d), dw, _p(out))
        return out, int(de)

    def leaky_relu(self, q: np.ndarray, e: int, alpha: float = 0.01, bits: int = 8) -> Tensor:
        x, w = _int(q)
        work = np.empty(x.size, np.int64)
        return self._rq("rctc_iq_leaky_relu", x.shape, bits, x.size, _p(x), w, int(e), fixed_point(alpha, 24), bits,
                        _p(work))

    def leaky_relu_backward(self, q: np.ndarray, e: int, dq: np.ndarray, de: int, alpha: float = 0.01,
                            bits: int = 8, rand: np.ndarray | None = None) -> Tensor:
        x, w = _int(q)
        d, dw = _int(dq)
        work = np.empty(x.size, np.int64)
        return self._rq("rctc_iq_leaky_relu_backward", d.shape, bits, x.size, _p(x), w, _p(d), dw, int(de),
                        fixed_point(alpha, 24), bits, _p(_rand(rand, d.shape)), _p(work))

    def hardsigmoid(self, q: np.ndarray, e: int, alpha: float = 0.2, beta: float = 0.5, bits: int = 8) -> Tensor:
        x, w = _int(q)
        work = np.empty(x.size, np.int64)
        return self._rq("rctc_iq_hardsigmoid", x.shape, bits, x.size, _p(x), w, int(e), *_ratio(alpha),
                        *_ratio(beta), bits, _p(work))

    def hardsigmoid_backward(self, q: np.ndarray, e: int, dq: np.ndarray, de: int, alpha: float = 0.2,
                             beta: float = 0.5, bits: int = 8, rand: np.ndarray | None = None) -> Tensor:
        x, w = _int(q)
        d, dw = _int(dq)
        work = np.empty(x.size, np.int64)
        return self._rq("rctc_iq_hardsigmoid_backward", d.shape, bits, x.size, _p(x), w, int(e), _p(d), dw, int(de),
                        *_ratio(alpha), *_ratio(beta), bits, _p(_rand(rand, d.shape)), _p(work))

    def hardswish(self, q: np.ndarray, e: int, bits: int = 8) -> Tensor:
        x, w = _int(q)
        work = np.empty(x.size, np.int64)
        return self._rq("rctc_iq_hardswish", x.shape, bits, x.size, _p(x), w, int(e), bits, _p(work))

    def hardswish_backward(self, q: np.ndarray, e: int, dq: np.ndarray, de: int, bits: int = 8,
                           rand: np.ndarray | None = None) -> Tensor:
        x, w = _int(q)
        d, dw = _int(dq)
        work = np.empty(x.size, np.int64)
        return self._rq("rctc_iq_hardswish_backward", d.shape, bits, x.size, _p(x), w, int(e), _p(d), dw, int(de),
                        bits, _p(_rand(rand, d.shape)), _p(work))

    # ---- arithmetic -----------------------------------------------------------------------------
    @staticmethod
    def _bcast(shape: tuple[int, ...], x: np.ndarray) -> ctypes.Array:
        """Element strides of ``x`` broadcast to ``shape`` (0 on broadcast axes)."""
        return (ctypes.c_ssize_t * max(1, len(shape)))(*broadcast_strides(tuple(shape), x.shape))

    def _binary(self, kind: str, qa, ea, qb, eb, bits, rand) -> Tensor:
        a, aw = _int(qa)
        b, bw = _int(qb)
        shape = np.broadcast_shapes(a.shape, b.shape)
        if len(shape) > 8:
            raise ValueError("the native kernels take at most 8 dimensions")
        work = np.empty(math.prod(shape), np.int64)
        dims = (c_int * max(1, len(shape)))(*shape)
        args = [len(shape), dims, _p(a), aw, self._bcast(shape, a), int(ea), _p(b), bw, self._bcast(shape, b), int(eb)]
        if kind == "mul":
            return self._rq("rctc_iq_mul", shape, bits, *args, bits, _p(_rand(rand, shape)), _p(work))
        return self._rq("rctc_iq_add", shape, bits, *args, int(kind == "sub"), bits, _p(_rand(rand, shape)), _p(work))

    def add(self, qa, ea, qb, eb, bits: int = 8, rand=None) -> Tensor:
        return self._binary("add", qa, ea, qb, eb, bits, rand)

    def sub(self, qa, ea, qb, eb, bits: int = 8, rand=None) -> Tensor:
        return self._binary("sub", qa, ea, qb, eb, bits, rand)

    def mul(self, qa, ea, qb, eb, bits: int = 8, rand=None) -> Tensor:
        return self._binary("mul", qa, ea, qb, eb, bits, rand)

    def reduce_to(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Exact int64 sum of a broadcast result back to an operand's ``shape`` (no rounding)."""
        return self._reduce_to(x, 0, shape, 8, None, exact=True)

    def _reduce_to(self, dq, de, shape, bits, rand, negate=False, m=None, exact=False):
        d, dw = _int(dq)
        full = d.shape
        shape = tuple(shape)
        rs = (ctypes.c_ssize_t * max(1, len(full)))(*broadcast_strides(full, shape))
        n_red = math.prod(shape)
        mm, mw = _int(m) if m is not None else (None, 0)
        ms = self._bcast(full, mm) if mm is not None else None
        work = np.empty(max(1, n_red), np.int64)
        dims = (c_int * max(1, len(full)))(*full)
        if exact:
            self.lib.rctc_iq_reduce_sum(len(full), dims, _p(d), dw, 0, None, 0, None, rs, n_red, _p(work))
            return work[:n_red].reshape(shape).copy()
        return self._rq("rctc_iq_reduce_to", shape, bits, len(full), dims, _p(d), dw, int(negate), _p(mm), mw, ms, rs,
                        n_red, int(de), bits, _p(_rand(rand, shape)), _p(work))

    def add_backward(self, dq, de, shape_a, shape_b, bits: int = 8, rand_a=None, rand_b=None):
        return self._reduce_to(dq, de, shape_a, bits, rand_a), self._reduce_to(dq, de, shape_b, bits, rand_b)

    def sub_backward(self, dq, de, shape_a, shape_b, bits: int = 8, rand_a=None, rand_b=None):
        return (self._reduce_to(dq, de, shape_a, bits, rand_a),
                self._reduce_to(dq, de, shape_b, bits, rand_b, negate=True))

    def mul_backward(self, qa, ea, qb, eb, dq, de, bits: int = 8, rand_a=None, rand_b=None):
        da = self._reduce_to(dq, int(de) + int(eb), np.shape(qa), bits, rand_a, m=qb)
        db = self._reduce_to(dq, int(de) + int(ea), np.shape(qb), bits, rand_b, m=qa)
        return da, db

    def concat(self, tensors: Sequence[Tensor], axis: int, bits: int = 8) -> Tensor:
        ints = [_int(q) for q, _ in tensors]
        shape0 = ints[0][0].shape
        axis %= len(shape0)
        sizes = [q.shape[axis] for q, _ in ints]
        out_shape = shape0[:axis] + (sum(sizes),) + shape0[axis + 1:]
        k = len(ints)
        xs = (c_void_p * k)(*[q.ctypes.data for q, _ in ints])
        work = np.empty(max(1, math.prod(out_shape)), np.int64)
        return self._rq("rctc_iq_concat", out_shape, bits, k, xs, (c_int * k)(*[w for _, w in ints]),
                        (c_int * k)(*[int(e) for _, e in tensors]), math.prod(shape0[:axis]), (c_int * k)(*sizes),
                        math.prod(shape0[axis + 1:]), bits, _p(work))

    def concat_backward(self, dq: np.ndarray, de: int, sizes: list[int], axis: int) -> list[Tensor]:
        d, dw = _int(dq)
        axis %= d.ndim
        outs = [np.empty(d.shape[:axis] + (s,) + d.shape[axis + 1:], d.dtype) for s in sizes]
        k = len(sizes)
        self.lib.rctc_iq_concat_backward(_p(d), dw, math.prod(d.shape[:axis]), k, (c_int * k)(*sizes),
                                         math.prod(d.shape[axis + 1:]), (c_void_p * k)(*[o.ctypes.data for o in outs]))
        return [(o, int(de)) for o in outs]

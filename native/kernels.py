"""Typed numpy-facing wrappers of the C kernel library (for tests, benchmarks and the runtime).

Needs: a library loaded by :func:`rctc.native.build.load_library`. Leaves: every wrapper checks
dtypes and shapes before calling C (a wrong array is a ``ValueError``, never a crash), passes
numpy strides through as element strides (so transposed views cost no copy), and allocates
outputs in Python: the C kernels never allocate.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_char_p, c_int, c_int64, c_size_t, c_ssize_t, c_uint32, c_uint64, c_void_p

import numpy as np

from rctc.native.build import load_library

GEMM_TYPES: dict[tuple[type, type, type], str] = {
    (np.int8, np.int8, np.int32): "s8s8s32",
    (np.int8, np.int8, np.int64): "s8s8s64",
    (np.int16, np.int8, np.int32): "s16s8s32",
    (np.int16, np.int8, np.int64): "s16s8s64",
    (np.int8, np.int16, np.int32): "s8s16s32",
    (np.int8, np.int16, np.int64): "s8s16s64",
}
#: Variants callable by name; "" is the dispatched entry point.
VARIANTS = ("", "portable", "avx2", "avx512vnni")
#: The fused SGD update's entry points (rctc_update.h): dispatched, specification, fast paths.
SGD_VARIANTS = ("fused", "fused_portable", "fast_portable", "fast_avx2", "fast_avx512")
#: rctc_update.h's RCTC_SGD_NOT_FAST: a fast path declined operands outside its range.
SGD_NOT_FAST = 1


class Conv2dGeom(ctypes.Structure):
    """``rctc_conv2d``: one group's channels, input size, kernel, stride, begin pads, dilation, output."""

    _fields_ = [(n, c_int) for n in ("c", "h", "w", "kh", "kw", "stride_h", "stride_w", "pad_t", "pad_l",
                                      "dil_h", "dil_w", "oh", "ow")]


class BwWindow(ctypes.Structure):
    """``rctc_bw_window`` (rctc_bitwidth.h): the controller's window sums, sum_g as (lo, hi) words."""

    _fields_ = [("count", c_uint64), ("sum_g_lo", c_uint64), ("sum_g_hi", c_uint64), ("sum_s", c_uint64),
                ("sum_n", c_uint64)]

    @property
    def sums(self) -> list[int]:
        """``[count, sum_g, sum_s, sum_n]`` (rctc.bitwidth_rule.Window.as_list)."""
        return [self.count, self.sum_g_hi << 64 | self.sum_g_lo, self.sum_s, self.sum_n]


class Kernels:
    """The kernel library's entry points with numpy arguments."""

    def __init__(self, lib: ctypes.CDLL | None = None) -> None:
        self.lib = load_library() if lib is None else lib
        self.lib.rctc_isa_name.restype = c_char_p
        self.lib.rctc_isa_available.restype = c_int
        for name, res in (("rctc_absmax_s32", c_uint32), ("rctc_absmax_s64", c_uint64)):
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = res, [c_size_t, c_void_p]
        self.lib.rctc_requant_shift.restype = c_int
        self.lib.rctc_requant_shift.argtypes = [c_uint64, c_int]
        for name in ("rctc_requant_s32_s8", "rctc_requant_s64_s8"):
            getattr(self.lib, name).argtypes = [c_size_t, c_void_p, c_int, c_int, c_void_p, c_void_p]
        for name in ("rctc_bias_add_s32", "rctc_bias_add_s64"):
            getattr(self.lib, name).argtypes = [c_size_t, c_size_t, c_size_t, c_void_p, c_void_p]
        self.lib.rctc_im2col_s8.argtypes = [POINTER(Conv2dGeom), c_void_p, c_void_p, c_ssize_t]
        for name in ("rctc_col2im_s32", "rctc_col2im_s64"):
            getattr(self.lib, name).argtypes = [POINTER(Conv2dGeom), c_void_p, c_ssize_t, c_void_p]
        lib = self.lib
        for variant in SGD_VARIANTS:
            fn = getattr(lib, f"rctc_sgd_update_{variant}", None)
            if fn is not None:  # the AVX2 fast path exists only in x86-64 builds
                fn.restype = c_int
                fn.argtypes = [c_size_t, c_void_p, c_int, c_void_p, c_int64, c_int, c_int, c_void_p, c_void_p, c_void_p]
        lib.rctc_bw_gavg.restype, lib.rctc_bw_gavg.argtypes = c_uint64, [c_uint64, c_int64, c_int, c_uint64]
        lib.rctc_bw_observe.restype = c_int
        lib.rctc_bw_observe.argtypes = [POINTER(BwWindow), c_uint64, c_uint64, c_uint64]
        lib.rctc_bw_decide.restype = c_int
        lib.rctc_bw_decide.argtypes = [POINTER(BwWindow), c_uint64, c_uint64, c_int, c_int, c_int]
        lib.rctc_bw_adjust.restype = c_int
        lib.rctc_bw_adjust.argtypes = [POINTER(BwWindow), c_uint64, c_uint64, c_int, c_int, c_size_t, c_void_p,
                                       c_int, POINTER(c_int), POINTER(c_int)]

    @property
    def isa(self) -> str:
        """The SIMD variant the dispatched kernels use on this CPU."""
        return self.lib.rctc_isa_name().decode()

    def has_variant(self, variant: str) -> bool:
        bit = {"": -1, "portable": 0, "avx2": 1, "avx512vnni": 2}[variant]
        return bit < 0 or bool(self.lib.rctc_isa_available() >> bit & 1)

    # ---- GEMM -------------------------------------------------------------------------------
    def gemm(self, a: np.ndarray, b: np.ndarray, out_dtype: type = np.int32, *, out: np.ndarray | None = None,
             accumulate: bool = False, nthreads: int = 1, variant: str = "") -> np.ndarray:
        """``out (+)= a @ b`` for 2-D integer arrays of any strides (views welcome)."""
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"gemm: shapes {a.shape} and {b.shape} do not multiply")
        key = (a.dtype.type, b.dtype.type, np.dtype(out_dtype).type)
        if key not in GEMM_TYPES:
            raise ValueError(f"gemm: no kernel for {a.dtype} x {b.dtype} -> {np.dtype(out_dtype)}")
        name = "rctc_gemm_" + GEMM_TYPES[key] + (f"_{variant}" if variant else "")
        if variant and not self.has_variant(variant):
            raise ValueError(f"gemm: this CPU cannot run the {variant} variant")
        if variant and b.dtype != np.int8:
            raise ValueError("gemm: s8 x s16 has only the dispatched entry point (the transposed s16 x s8)")
        m, k = a.shape
        n = b.shape[1]
        if out is None:
            out = np.zeros((m, n), out_dtype) if accumulate else np.empty((m, n), out_dtype)
        if out.shape != (m, n) or out.dtype != np.dtype(out_dtype):
            raise ValueError(f"gemm: out must be {(m, n)} {np.dtype(out_dtype)}")
        fn = getattr(self.lib, name)
        fn(c_int(m), c_int(n), c_int(k), _ptr(a), *_strides(a), _ptr(b), *_strides(b), _ptr(out), *_strides(out),
           c_int(int(accumulate)), c_int(nthreads))
        return out

    # ---- requantise -------------------------------------------------------------------------
    def absmax(self, x: np.ndarray) -> int:
        x = _contig(x, (np.int32, np.int64), "absmax")
        fn = self.lib.rctc_absmax_s32 if x.dtype == np.int32 else self.lib.rctc_absmax_s64
        return int(fn(x.size, _ptr(x)))

    def requant_shift(self, absmax: int, bits: int) -> int:
        return int(self.lib.rctc_requant_shift(absmax, bits))

    def requant(self, acc: np.ndarray, shift: int, bits: int = 8, rand: np.ndarray | None = None) -> np.ndarray:
        """int8 ``clip((acc + r) >> shift)``, nearest (rand None) or stochastic with uint32 words."""
        acc = _contig(acc, (np.int32, np.int64), "requant")
        if not 0 <= shift <= 62 or not 2 <= bits <= 8:
            raise ValueError(f"requant: shift {shift} must be in [0, 62] and bits {bits} in [2, 8]")
        if rand is not None:
            rand = _contig(rand, (np.uint32,), "requant rand")
            if rand.shape != acc.shape:
                raise ValueError("requant: one random word per element")
        out = np.empty(acc.shape, np.int8)
        fn = self.lib.rctc_requant_s32_s8 if acc.dtype == np.int32 else self.lib.rctc_requant_s64_s8
        fn(acc.size, _ptr(acc), shift, bits, None if rand is None else _ptr(rand), _ptr(out))
        return out

    def bias_add(self, acc: np.ndarray, bias: np.ndarray, axis: int = 1) -> None:
        """In place ``acc += bias`` broadcast along ``axis`` (acc C-contiguous, bias of acc's dtype)."""
        if not acc.flags.c_contiguous or acc.dtype not in (np.int32, np.int64) or bias.dtype != acc.dtype:
            raise ValueError("bias_add: acc must be C-contiguous int32/int64 and bias of the same dtype")
        if bias.shape != (acc.shape[axis],):
            raise ValueError(f"bias_add: bias must have shape ({acc.shape[axis]},)")
        outer = int(np.prod(acc.shape[:axis]))
        inner = int(np.prod(acc.shape[axis + 1:]))
        bias = np.ascontiguousarray(bias)
        fn = self.lib.rctc_bias_add_s32 if acc.dtype == np.int32 else self.lib.rctc_bias_add_s64
        fn(outer, acc.shape[axis], inner, _ptr(acc), _ptr(bias))

    # ---- im2col / col2im --------------------------------------------------------------------
    def im2col(self, g: Conv2dGeom, x: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """Columns ``(c*kh*kw, oh*ow)`` (or a caller's wider ``cols``) of one group's int8 image."""
        x = _contig(x, (np.int8,), "im2col")
        if x.shape != (g.c, g.h, g.w):
            raise ValueError(f"im2col: x must be {(g.c, g.h, g.w)}")
        rows, p = g.c * g.kh * g.kw, g.oh * g.ow
        if cols is None:
            cols = np.empty((rows, p), np.int8)
        if cols.dtype != np.int8 or cols.shape[0] != rows or cols.shape[1] < p or cols.strides[1] != 1:
            raise ValueError(f"im2col: cols must be int8 ({rows}, >={p}) with unit column stride")
        self.lib.rctc_im2col_s8(ctypes.byref(g), _ptr(x), _ptr(cols), cols.strides[0])
        return cols

    def col2im(self, g: Conv2dGeom, cols: np.ndarray) -> np.ndarray:
        """The image ``(c, h, w)`` every column entry adds into (int32 or int64, as cols)."""
        if cols.dtype not in (np.int32, np.int64) or cols.shape[0] != g.c * g.kh * g.kw or \
                cols.shape[1] < g.oh * g.ow or cols.strides[1] != cols.itemsize:
            raise ValueError("col2im: cols must be int32/int64 (c*kh*kw, >=oh*ow) with unit column stride")
        dx = np.empty((g.c, g.h, g.w), cols.dtype)
        fn = self.lib.rctc_col2im_s32 if cols.dtype == np.int32 else self.lib.rctc_col2im_s64
        fn(ctypes.byref(g), _ptr(cols), cols.strides[0] // cols.itemsize, _ptr(dx))
        return dx


    # ---- fused update and the bitwidth controller ------------------------------------------
    def sgd_update_fused(self, q: np.ndarray, acc: np.ndarray, m: int, k: int, bits: int,
                         rand: np.ndarray | None = None,
                         variant: str = "fused") -> tuple[int, np.ndarray, tuple[int, int]]:
        """``(rc, new q, (A, S))`` of ``rctc_sgd_update_<variant>`` (rand None: nearest rounding):
        ``fused`` the dispatched entry point, ``fused_portable`` the specification, ``fast_portable``
        / ``fast_avx2`` / ``fast_avx512`` the fast path (rc ``SGD_NOT_FAST`` outside its range)."""
        fn = getattr(self.lib, f"rctc_sgd_update_{variant}", None) if variant in SGD_VARIANTS else None
        isa = {"fast_avx2": "avx2", "fast_avx512": "avx512vnni"}.get(variant, "")
        if fn is None or not self.has_variant(isa):
            raise ValueError(f"sgd_update_fused: no variant {variant!r} on this build and CPU")
        q = _contig(q, (np.int8, np.int16, np.int32), "sgd_update_fused")
        acc = _contig(acc, (np.int64,), "sgd_update_fused acc")
        if acc.size != q.size or (rand is not None and np.asarray(rand).size != q.size):
            raise ValueError("sgd_update_fused: acc (and rand) need one element per parameter element")
        if rand is not None:
            rand = _contig(rand, (np.uint32,), "sgd_update_fused rand")
        out = np.empty_like(q)
        stats = np.zeros(2, np.uint64)
        rc = fn(q.size, _ptr(q), q.itemsize, _ptr(acc), m, k, bits, None if rand is None else _ptr(rand), _ptr(out),
                _ptr(stats))
        return int(rc), out, (int(stats[0]), int(stats[1]))

    def bw_gavg(self, a: int, m: int, k: int, n: int) -> int:
        return int(self.lib.rctc_bw_gavg(a, m, k, n))

    def bw_observe(self, w: BwWindow, g: int, s: int, n: int) -> int:
        return int(self.lib.rctc_bw_observe(ctypes.byref(w), g, s, n))

    def bw_decide(self, w: BwWindow, low: int, high: int, bits: int, min_bits: int, max_bits: int) -> int:
        return int(self.lib.rctc_bw_decide(ctypes.byref(w), low, high, bits, min_bits, max_bits))

    def bw_adjust(self, w: BwWindow, low: int, high: int, min_bits: int, max_bits: int, q: np.ndarray, bits: int,
                  exp: int) -> tuple[int, int, int]:
        """``rctc_bw_adjust`` on ``q`` in place (C-contiguous int8/16/32): ``(action, bits, exp)``."""
        if q.dtype not in (np.int8, np.int16, np.int32) or not q.flags.c_contiguous or not q.flags.writeable:
            raise ValueError("bw_adjust: q must be a writeable C-contiguous int8/int16/int32 array")
        b, e = c_int(bits), c_int(exp)
        action = self.lib.rctc_bw_adjust(ctypes.byref(w), low, high, min_bits, max_bits, q.size, _ptr(q), q.itemsize,
                                         ctypes.byref(b), ctypes.byref(e))
        return int(action), b.value, e.value


def _ptr(a: np.ndarray) -> c_void_p:
    return c_void_p(a.ctypes.data)


def _strides(a: np.ndarray) -> tuple[c_ssize_t, c_ssize_t]:
    s0, s1 = (int(s) // a.itemsize for s in a.strides)
    return c_ssize_t(s0), c_ssize_t(s1)


def _contig(x: np.ndarray, dtypes: tuple[type, ...], what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.type not in dtypes:
        raise ValueError(f"{what}: expected {' or '.join(np.dtype(d).name for d in dtypes)}, got {x.dtype}")
    return np.ascontiguousarray(x)


def conv2d_geom(c: int, h: int, w: int, kh: int, kw: int, stride: tuple[int, int] = (1, 1),
                pads: tuple[int, int, int, int] = (0, 0, 0, 0), dilation: tuple[int, int] = (1, 1)) -> Conv2dGeom:
    """Geometry with ONNX pads ``(top, left, bottom, right)``; output size by the ONNX rule."""
    oh = (h + pads[0] + pads[2] - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError("conv2d_geom: the kernel does not fit the padded input")
    return Conv2dGeom(c, h, w, kh, kw, stride[0], stride[1], pads[0], pads[1], dilation[0], dilation[1], oh, ow)

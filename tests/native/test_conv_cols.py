"""im2col / col2im + GEMM as NCHW int8 convolutions: forward, weight and data gradients.

References are plain int64 numpy loops over the kernel taps (the definition of a convolution
with ONNX pads, strides, dilations and groups); the C path is im2col, the GEMM (every variant)
and col2im per (image, group), exactly as the code generator calls them; depthwise
convolutions through rctc_dwconv_* (stride-1 flat grid and row paths, int8 / int16 weights,
s32 / s64 sums).
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from rctc.native.kernels import Conv2dGeom, Kernels, conv2d_geom
from tests.native.conftest import simd_variants

# (n, c, h, w, m, kh, kw, stride, pads (t, l, b, r), dilation, groups)
CASES = [
    (1, 1, 1, 1, 1, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (2, 3, 17, 17, 5, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 4, 31, 9, 6, 3, 5, (2, 1), (1, 2, 0, 2), (1, 1), 2),
    (3, 6, 13, 11, 6, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 6),  # depthwise
    (2, 8, 9, 16, 4, 2, 3, (1, 3), (0, 1, 1, 0), (2, 2), 4),
    (1, 2, 65, 3, 3, 5, 1, (3, 1), (2, 0, 2, 0), (1, 1), 1),
    (2, 16, 8, 8, 32, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),
    (1, 2, 5, 1, 3, 3, 3, (1, 3), (1, 2, 1, 2), (1, 1), 1),  # taps whose whole column range is padding
    # stride 1 and ow == w: im2col's one-copy path (dilated, asymmetric pads, a kernel past the image)
    (1, 3, 7, 6, 2, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1),
    (2, 2, 5, 4, 3, 2, 2, (1, 1), (0, 1, 1, 0), (1, 1), 1),
    (1, 1, 2, 3, 1, 5, 3, (1, 1), (2, 1, 2, 1), (1, 1), 1),
    (1, 2, 4, 5, 2, 3, 1, (1, 1), (3, 0, 0, 0), (1, 1), 1),
    # kernels wider than the 16 column ranges im2col / col2im compute once per call
    (1, 1, 3, 20, 1, 1, 17, (1, 1), (0, 8, 0, 8), (1, 1), 1),
    (1, 2, 3, 21, 2, 1, 18, (1, 2), (0, 3, 0, 2), (1, 1), 1),
]


def out_hw(h: int, k: int, s: int, pb: int, pe: int, d: int) -> int:
    return (h + pb + pe - (k - 1) * d - 1) // s + 1


def padded(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    t, left, b, r = pads
    return np.pad(x.astype(np.int64), ((0, 0), (0, 0), (t, b), (left, r)))


def taps(case):  # yields (i, j, row slice, col slice) of the padded input each tap reads
    n, c, h, w, m, kh, kw, (sh, sw), pads, (dh, dw), g = case
    oh = out_hw(h, kh, sh, pads[0], pads[2], dh)
    ow = out_hw(w, kw, sw, pads[1], pads[3], dw)
    for i in range(kh):
        for j in range(kw):
            yield i, j, slice(i * dh, i * dh + (oh - 1) * sh + 1, sh), slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)


def ref_forward(case, x: np.ndarray, wt: np.ndarray) -> np.ndarray:
    g = case[-1]
    xp = padded(x, case[8])
    cg, mg = x.shape[1] // g, wt.shape[0] // g
    y = None
    for i, j, rs, cs in taps(case):
        part = []
        for gi in range(g):
            xs = xp[:, gi * cg:(gi + 1) * cg, rs, cs]  # (n, cg, oh, ow)
            part.append(np.einsum("nchw,mc->nmhw", xs, wt[gi * mg:(gi + 1) * mg, :, i, j].astype(np.int64)))
        t = np.concatenate(part, axis=1)
        y = t if y is None else y + t
    return y


def ref_grad_weight(case, x: np.ndarray, dy: np.ndarray, wshape: tuple[int, ...]) -> np.ndarray:
    g = case[-1]
    xp = padded(x, case[8])
    cg, mg = x.shape[1] // g, wshape[0] // g
    dw = np.zeros(wshape, np.int64)
    for i, j, rs, cs in taps(case):
        for gi in range(g):
            xs = xp[:, gi * cg:(gi + 1) * cg, rs, cs]
            dyg = dy[:, gi * mg:(gi + 1) * mg].astype(np.int64)
            dw[gi * mg:(gi + 1) * mg, :, i, j] = np.einsum("nchw,nmhw->mc", xs, dyg)
    return dw


def ref_grad_input(case, dy: np.ndarray, wt: np.ndarray, xshape: tuple[int, ...]) -> np.ndarray:
    g, pads = case[-1], case[8]
    n, c, h, w = xshape
    cg, mg = c // g, wt.shape[0] // g
    dxp = np.zeros((n, c, h + pads[0] + pads[2], w + pads[1] + pads[3]), np.int64)
    for i, j, rs, cs in taps(case):
        for gi in range(g):
            dyg = dy[:, gi * mg:(gi + 1) * mg].astype(np.int64)
            wg = wt[gi * mg:(gi + 1) * mg, :, i, j].astype(np.int64)
            dxp[:, gi * cg:(gi + 1) * cg, rs, cs] += np.einsum("nmhw,mc->nchw", dyg, wg)
    return dxp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w]


def native_conv(k: Kernels, case, x, wt, dy, variant: str):
    """Forward, weight gradient and data gradient through im2col / GEMM / col2im."""
    n, c, h, w, m, kh, kw, stride, pads, dil, g = case
    cg, mg = c // g, m // g
    geom = conv2d_geom(cg, h, w, kh, kw, stride, pads, dil)
    p = geom.oh * geom.ow
    y = np.empty((n, m, geom.oh, geom.ow), np.int32)
    dw = np.zeros((m, cg * kh * kw), np.int64)
    dx = np.empty((n, c, h, w), np.int64)
    w2 = wt.reshape(m, cg * kh * kw)
    for ni in range(n):
        for gi in range(g):
            cols = k.im2col(geom, x[ni, gi * cg:(gi + 1) * cg])
            wg = w2[gi * mg:(gi + 1) * mg]
            dyg = dy[ni, gi * mg:(gi + 1) * mg].reshape(mg, p)
            k.gemm(wg, cols, np.int32, out=y[ni, gi * mg:(gi + 1) * mg].reshape(mg, p), variant=variant)
            k.gemm(dyg, cols.T, np.int64, out=dw[gi * mg:(gi + 1) * mg], accumulate=True, variant=variant)
            dcols = k.gemm(wg.T, dyg, np.int64, variant=variant)
            dx[ni, gi * cg:(gi + 1) * cg] = k.col2im(geom, dcols)
    return y, dw.reshape(wt.shape), dx


@pytest.mark.parametrize("case", CASES, ids=[f"c{i}" for i in range(len(CASES))])
def test_conv_via_columns_matches_int64_reference(kernels: Kernels, case) -> None:
    n, c, h, w, m, kh, kw, stride, pads, dil, g = case
    rng = np.random.default_rng(len(CASES) + c * h)
    x = rng.integers(-127, 128, (n, c, h, w), dtype=np.int8)
    wt = rng.integers(-127, 128, (m, c // g, kh, kw), dtype=np.int8)
    oh = out_hw(h, kh, stride[0], pads[0], pads[2], dil[0])
    ow = out_hw(w, kw, stride[1], pads[1], pads[3], dil[1])
    dy = rng.integers(-127, 128, (n, m, oh, ow), dtype=np.int8)
    want = (ref_forward(case, x, wt), ref_grad_weight(case, x, dy, wt.shape), ref_grad_input(case, dy, wt, x.shape))
    for v in ("portable", *simd_variants(kernels)):
        got = native_conv(kernels, case, x, wt, dy, v)
        for name, a, b in zip(("forward", "grad_weight", "grad_input"), got, want):
            assert np.array_equal(a, b), (v, name)


def test_im2col_zero_padding_and_wide_rows(kernels: Kernels) -> None:
    """Columns land at a caller's row stride (images side by side); padding reads are 0."""
    x = np.arange(1, 10, dtype=np.int8).reshape(1, 3, 3)
    geom = conv2d_geom(1, 3, 3, 2, 2, (1, 1), (1, 1, 0, 0))
    cols = np.full((4, 20), 99, np.int8)
    kernels.im2col(geom, x, cols[:, 5:])
    want = np.array([[0, 0, 0, 0, 1, 2, 0, 4, 5], [0, 0, 0, 1, 2, 3, 4, 5, 6],
                     [0, 1, 2, 0, 4, 5, 0, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8, 9]], np.int8)
    assert np.array_equal(cols[:, 5:14], want)
    assert (cols[:, :5] == 99).all() and (cols[:, 14:] == 99).all()


def test_col2im_s32_wraps(kernels: Kernels) -> None:
    """Pixel 1 sums two column entries (taps 0 and 1); the tap reading the right pad is dropped."""
    geom = conv2d_geom(1, 1, 2, 1, 2, (1, 1), (0, 0, 0, 1))
    cols = np.array([[2**31 - 1, 5], [2**31 - 1, 7]], np.int32)  # rows: taps, columns: output pixels
    dx = kernels.col2im(geom, cols)
    assert dx.dtype == np.int32
    assert dx.ravel().tolist() == [2**31 - 1, 5 + 2**31 - 1 - 2**32]
    dx64 = kernels.col2im(geom, cols.astype(np.int64))
    assert dx64.ravel().tolist() == [2**31 - 1, 5 + 2**31 - 1]


# depthwise (group == channels == outputs): (n, c, h, w, kh, kw, stride, pads, dilation)
DW_CASES = [
    (2, 5, 9, 7, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),   # stride 1: the padded flat-grid path
    (1, 3, 8, 11, 3, 3, (1, 1), (2, 0, 1, 2), (2, 2)),  # dilation, asymmetric pads
    (2, 4, 13, 10, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1)),  # stride 2: the row path
    (1, 2, 6, 5, 3, 2, (1, 2), (0, 1, 2, 0), (1, 1)),
    (1, 3, 4, 4, 3, 3, (1, 1), (3, 3, 3, 3), (1, 1)),   # pads beyond the kernel: data grad by rows
]


def _dw(kernels: Kernels, name: str, geom: Conv2dGeom, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    work = np.zeros(8 * 64 * 64 + 64 * 64, np.uint8)  # more than any case's grid
    fn = getattr(kernels.lib, name)
    fn.restype = None
    fn.argtypes = [ctypes.POINTER(Conv2dGeom), *[ctypes.c_void_p] * 4]
    fn(ctypes.byref(geom), a.ctypes.data, b.ctypes.data, work.ctypes.data, out.ctypes.data)


@pytest.mark.parametrize("case", DW_CASES, ids=[f"dw{i}" for i in range(len(DW_CASES))])
@pytest.mark.parametrize("wdt,acc", [(np.int8, np.int32), (np.int16, np.int32), (np.int16, np.int64)])
def test_depthwise_kernels_match_int64_reference(kernels: Kernels, case, wdt, acc) -> None:
    n, c, h, w, kh, kw, stride, pads, dil = case
    full = (n, c, h, w, c, kh, kw, stride, pads, dil, c)
    rng = np.random.default_rng(c * h + w)
    hi = 128 if wdt == np.int8 else 2**12
    x = rng.integers(-127, 128, (n, c, h, w), dtype=np.int8)
    wt = rng.integers(-hi + 1, hi, (c, 1, kh, kw)).astype(wdt)
    geom = conv2d_geom(c, h, w, kh, kw, stride, pads, dil)
    dy = rng.integers(-127, 128, (n, c, geom.oh, geom.ow), dtype=np.int8)
    suf = f"s{np.dtype(wdt).itemsize * 8}s{np.dtype(acc).itemsize * 8}"
    y = np.full((n, c, geom.oh, geom.ow), 7, acc)
    dx = np.full((n, c, h, w), 7, acc)
    dw = np.full((c, 1, kh, kw), 7, np.int64)
    lib = kernels.lib
    lib.rctc_dwconv_grad_weight_s64.restype = None
    lib.rctc_dwconv_grad_weight_s64.argtypes = [ctypes.POINTER(Conv2dGeom), *[ctypes.c_void_p] * 3, ctypes.c_int]
    for i in range(n):
        _dw(kernels, f"rctc_dwconv_{suf}", geom, x[i], wt, y[i])
        _dw(kernels, f"rctc_dwconv_grad_input_{suf}", geom, dy[i], wt, dx[i])
        lib.rctc_dwconv_grad_weight_s64(ctypes.byref(geom), dy[i].ctypes.data, x[i].ctypes.data, dw.ctypes.data,
                                        int(i > 0))
    assert np.array_equal(y, ref_forward(full, x, wt))
    assert np.array_equal(dx, ref_grad_input(full, dy, wt, x.shape))
    assert np.array_equal(dw, ref_grad_weight(full, x, dy, wt.shape))


def test_stride2_gather_avx2_equals_portable(kernels: Kernels) -> None:
    """x86/im2col_avx2.c's stride-2 row gather gives the portable bytes for every length around
    its 16-byte steps; each row ends at the end of a two-page mapping, so a read past
    src[2 (n - 1)] would leave it."""
    import ctypes
    import mmap

    if not kernels.has_variant("avx2"):
        pytest.skip("this CPU has no AVX2")
    lib = kernels.lib
    for name in ("rctc_gather_s8_s2_avx2", "rctc_gather_s8_s2_portable"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
    page = mmap.PAGESIZE
    buf = mmap.mmap(-1, 2 * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    rng = np.random.default_rng(5)
    for n in [*range(0, 70), 255, 256, 257, 1000]:
        src_len = max(2 * n - 1, 0)
        data = rng.integers(-128, 128, src_len, dtype=np.int64).astype(np.int8)
        start = base + 2 * page - src_len  # the row's last byte is the mapping's last byte
        ctypes.memmove(start, data.ctypes.data, src_len)
        outs = []
        for name in ("rctc_gather_s8_s2_avx2", "rctc_gather_s8_s2_portable"):
            out = np.zeros(n + 1, np.int8)
            getattr(lib, name)(n, start, out.ctypes.data)
            outs.append(out)
        assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1][:n], data[::2][:n]), n
        assert outs[0][n] == 0
    buf.close()

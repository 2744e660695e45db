"""iq_pointwise_mt.c: ReLU, Clip and their backward masks on 1, 2 and 3 threads write exactly the
serial kernels' bytes, and the serial kernels agree with a plain int64 numpy restatement
(relu: max(x, 0); its mask: dy where x > 0; clip: min(max(x, lo), hi) on the input's grid; its
mask: dy where lo <= x <= hi), on sizes around the thread split (2^17 elements a thread) and the
64-element chunk unit, for int8 and int16 operands."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from rctc.native.kernels import Kernels

SIZES = (1, 63, 64, 65, 131071, 262144, 262144 + 37, 400001)
# ReLU6 at exponent -4 (hi = 6 * 2^4 = 96 on the grid) and a clip of [-1.5, 2.25] at exponent -5
CLIPS = ((-4, 1, 0, 0, 1, 6, 0), (-5, 1, -3, 1, 1, 9, 2))


def _fn(lib: ctypes.CDLL, name: str, argtypes: list) -> ctypes._CFuncPtr:
    f = getattr(lib, name)
    f.restype, f.argtypes = None, argtypes
    return f


def _outs(n: int, dtype: type, serial, threaded, *args) -> np.ndarray:
    """The serial kernel's n outputs, after checking the threaded one writes the same on 1-3 threads
    and nothing past the end (a guard element)."""
    got = []
    for t in (None, 1, 2, 3):
        out = np.full(n + 1, 77, dtype)
        if t is None:
            serial(n, *args, out.ctypes.data)
        else:
            threaded(t, n, *args, out.ctypes.data)
        assert out[n] == 77, (n, t)
        got.append(out[:n])
    for g in got[1:]:
        assert np.array_equal(g, got[0]), n
    return got[0]


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_threaded_pointwise_equal_serial_and_plain(kernels: Kernels, dtype: type) -> None:
    lib, p, sz, i, i64 = kernels.lib, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int64
    relu = _fn(lib, "rctc_iq_relu", [sz, p, i, p])
    relu_mt = _fn(lib, "rctc_iq_relu_mt", [i, sz, p, i, p])
    relu_b = _fn(lib, "rctc_iq_relu_backward", [sz, p, i, p, i, p])
    relu_b_mt = _fn(lib, "rctc_iq_relu_backward_mt", [i, sz, p, i, p, i, p])
    clip_args = [i, i, i64, i, i, i64, i]
    clip = _fn(lib, "rctc_iq_clip", [sz, p, i, *clip_args, p])
    clip_mt = _fn(lib, "rctc_iq_clip_mt", [i, sz, p, i, *clip_args, p])
    clip_b = _fn(lib, "rctc_iq_clip_backward", [sz, p, i, *clip_args, p, i, p])
    clip_b_mt = _fn(lib, "rctc_iq_clip_backward_mt", [i, sz, p, i, *clip_args, p, i, p])
    rng = np.random.default_rng(9)
    info, w = np.iinfo(dtype), np.dtype(dtype).itemsize
    for n in SIZES:
        x = rng.integers(info.min, info.max + 1, n).astype(dtype)
        d = rng.integers(info.min, info.max + 1, n).astype(dtype)
        x64, d64 = x.astype(np.int64), d.astype(np.int64)

        assert np.array_equal(_outs(n, dtype, relu, relu_mt, x.ctypes.data, w), np.maximum(x64, 0))
        got = _outs(n, dtype, relu_b, relu_b_mt, x.ctypes.data, w, d.ctypes.data, w)
        assert np.array_equal(got, np.where(x64 > 0, d64, 0))
        for e, has_lo, lo_num, lo_log2, has_hi, hi_num, hi_log2 in CLIPS:
            lq = -((-lo_num * 2 ** (-e)) // 2**lo_log2)  # ceil(lo / 2^e)
            hq = (hi_num * 2 ** (-e)) // 2**hi_log2  # floor(hi / 2^e)
            bounds = (e, has_lo, lo_num, lo_log2, has_hi, hi_num, hi_log2)
            want = np.minimum(np.maximum(x64, lq), hq)
            assert np.array_equal(_outs(n, dtype, clip, clip_mt, x.ctypes.data, w, *bounds), want), (n, e)
            want_b = np.where((x64 >= lq) & (x64 <= hq), d64, 0)
            got = _outs(n, dtype, clip_b, clip_b_mt, x.ctypes.data, w, *bounds, d.ctypes.data, w)
            assert np.array_equal(got, want_b), (n, e)

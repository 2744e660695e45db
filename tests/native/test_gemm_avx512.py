"""The AVX-512 VNNI GEMM (x86/gemm_avx512.c) against the portable kernel and a plain int64 numpy
product, bit for bit; the RCTC_ISA override; and LeNet trained with each variant forced.

The grid covers odd sizes on every axis, each packing path the kernel has (row- and
K-contiguous B, K- and M-contiguous A, and any other stride element by element), the dtype
extremes (int8 -128 / 127, int16 -32768 / 32767 in the wide slot), s32 wrap-around and exact s64,
accumulation into strided outputs, and 1 / 2 threads. Skipped, with the reason, on a CPU (or OS)
without AVX-512 F/BW/VL/VNNI.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rctc.native.kernels import Kernels

ROOT = Path(__file__).resolve().parents[2]
SIZES_MN = (1, 3, 17, 63, 129)
SIZES_K = (1, 3, 15, 17, 63, 65, 129, 520)
DIRECT = [(np.int8, np.int8, np.int32), (np.int8, np.int8, np.int64), (np.int16, np.int8, np.int32),
          (np.int16, np.int8, np.int64)]
LAYOUTS = ("a_rows_b_rows", "a_rows_b_cols", "a_cols_b_cols", "strided", "a_cols_b_rows")


@pytest.fixture(scope="module")
def vnni(kernels: Kernels) -> Kernels:
    if not kernels.has_variant("avx512vnni"):
        pytest.skip("this CPU (or its OS) lacks AVX-512 F/BW/VL/VNNI with zmm state enabled: no avx512vnni variant")
    return kernels


def rand_int(rng: np.random.Generator, dtype: type, shape: tuple[int, int], extreme: bool) -> np.ndarray:
    info = np.iinfo(dtype)
    if extreme:
        return rng.choice(np.array([info.min, info.max, -info.max], dtype), size=shape)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)


def laid_out(x: np.ndarray, contiguous_axis: int | None) -> np.ndarray:
    """The same matrix as a view whose ``contiguous_axis`` has unit stride (None: neither has)."""
    if contiguous_axis == 1:
        return np.ascontiguousarray(x)
    if contiguous_axis == 0:
        return np.asfortranarray(x)
    big = np.zeros((x.shape[0] * 2, x.shape[1] * 3), x.dtype)
    big[::2, ::3] = x
    return big[::2, ::3]


def operands(layout: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A(m, k) and B(k, n) as the layout stores them: rows = row-contiguous, cols = column-contiguous."""
    if layout == "strided":
        return laid_out(a, None), laid_out(b, None)
    a_axis = 1 if layout.startswith("a_rows") else 0
    b_axis = 1 if layout.endswith("b_rows") else 0
    return laid_out(a, a_axis), laid_out(b, b_axis)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("types", DIRECT, ids=lambda t: "x".join(np.dtype(x).name for x in t))
def test_odd_shapes_equal_portable_and_int64(vnni: Kernels, types: tuple[type, type, type], layout: str) -> None:
    ta, tb, tc = types
    rng = np.random.default_rng(DIRECT.index(types) * 10 + LAYOUTS.index(layout))
    for i, (m, n, k) in enumerate(itertools.product(SIZES_MN, SIZES_MN, SIZES_K)):
        extreme = i % 3 == 0
        a, b = operands(layout, rand_int(rng, ta, (m, k), extreme), rand_int(rng, tb, (k, n), extreme))
        want = (a.astype(np.int64) @ b.astype(np.int64)).astype(tc)
        got = vnni.gemm(a, b, tc, variant="avx512vnni")
        assert np.array_equal(got, want), (m, n, k)
        assert np.array_equal(got, vnni.gemm(a, b, tc, variant="portable")), (m, n, k)


@pytest.mark.parametrize("types", DIRECT, ids=lambda t: "x".join(np.dtype(x).name for x in t))
def test_extremes_over_long_k(vnni: Kernels, types: tuple[type, type, type]) -> None:
    """All-minimum operands (the largest products, the u8 offset's worst case) over K spanning several
    K blocks: s32 wraps modulo 2^32 like the portable kernel, s64 is exact."""
    ta, tb, tc = types
    for k in (511, 512, 513, 1100, 4099):
        for va, vb in ((np.iinfo(ta).min, -128), (np.iinfo(ta).min, 127), (np.iinfo(ta).max, -128)):
            a = np.full((9, k), va, ta)
            b = np.full((k, 50), vb, tb)
            exact = a.astype(np.int64) @ b.astype(np.int64)
            got = vnni.gemm(a, b, tc, variant="avx512vnni")
            assert np.array_equal(got, exact.astype(tc)), (k, va, vb)
            assert np.array_equal(got, vnni.gemm(a, b, tc, variant="portable")), (k, va, vb)


@pytest.mark.parametrize("types", DIRECT, ids=lambda t: "x".join(np.dtype(x).name for x in t))
def test_accumulate_into_strided_outputs(vnni: Kernels, types: tuple[type, type, type]) -> None:
    ta, tb, tc = types
    rng = np.random.default_rng(5)
    for m, n, k in ((17, 63, 65), (65, 17, 129), (3, 129, 15)):
        a, b = rand_int(rng, ta, (m, k), False), rand_int(rng, tb, (k, n), False)
        info = np.iinfo(tc)
        base = rng.integers(info.min // 2, info.max // 2, size=(n, m)).astype(tc)
        for out in (base.copy().T, np.ascontiguousarray(base.T)):  # column-major and row-major C
            want = (out.astype(np.int64) + a.astype(np.int64) @ b.astype(np.int64)).astype(tc)
            vnni.gemm(a, b, tc, out=out, accumulate=True, variant="avx512vnni")
            assert np.array_equal(out, want), (m, n, k, out.flags.c_contiguous)


@pytest.mark.parametrize("types", DIRECT, ids=lambda t: "x".join(np.dtype(x).name for x in t))
def test_whole_tiles_written_and_accumulated(vnni: Kernels, types: tuple[type, type, type]) -> None:
    """Row-major C whose every tile is whole (8 rows; 16, 32 or 48 columns: the tile's vector
    store path), written and added to, over one K block and two."""
    ta, tb, tc = types
    rng = np.random.default_rng(17)
    for m, n, k in ((16, 16, 4), (8, 64, 36), (24, 96, 520), (16, 144, 144), (8, 48, 1)):
        a, b = rand_int(rng, ta, (m, k), False), rand_int(rng, tb, (k, n), k == 520)
        prod = a.astype(np.int64) @ b.astype(np.int64)
        assert np.array_equal(vnni.gemm(a, b, tc, variant="avx512vnni"), prod.astype(tc)), (m, n, k)
        info = np.iinfo(tc)
        out = rng.integers(info.min // 2, info.max // 2, size=(m, n)).astype(tc)
        want = (out.astype(np.int64) + prod).astype(tc)
        vnni.gemm(a, b, tc, out=out, accumulate=True, variant="avx512vnni")
        assert np.array_equal(out, want), (m, n, k)


@pytest.mark.parametrize("types", DIRECT, ids=lambda t: "x".join(np.dtype(x).name for x in t))
def test_threads_do_not_change_bits(vnni: Kernels, types: tuple[type, type, type]) -> None:
    """Products large enough to split (by columns when N >= M, else by rows), the training layouts."""
    ta, tb, tc = types
    rng = np.random.default_rng(13)
    cases = (("a_rows_b_rows", (16, 3000, 144)), ("a_rows_b_cols", (16, 144, 3001)), ("a_rows_b_cols", (16, 144, 3000)),
             ("a_cols_b_rows", (145, 2000, 16)), ("a_rows_b_rows", (1031, 65, 129)))
    for layout, (m, n, k) in cases:
        a, b = operands(layout, rand_int(rng, ta, (m, k), False), rand_int(rng, tb, (k, n), False))
        want = (a.astype(np.int64) @ b.astype(np.int64)).astype(tc)
        for t in (1, 2, 3):
            assert np.array_equal(vnni.gemm(a, b, tc, variant="avx512vnni", nthreads=t), want), (layout, t)


WIDE = [t for t in DIRECT if t[0] == np.int16]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("types", WIDE, ids=lambda t: "x".join(np.dtype(x).name for x in t))
def test_int16_a_within_int8_takes_the_narrowed_path(vnni: Kernels, types: tuple[type, type, type],
                                                     layout: str) -> None:
    """int16 A whose values all fit int8 (a weight slot at 8 bits) runs as int8 x int8; one value
    outside [-128, 127], anywhere (first, last, mid-row past the vector loop), sends it back to the
    int16 path; A over the narrowing buffer stays int16. Every case equals int64 and the portable kernel."""
    ta, tb, tc = types
    rng = np.random.default_rng(31 + LAYOUTS.index(layout))
    for m, n, k in ((1, 1, 1), (3, 17, 33), (16, 129, 144), (17, 63, 520), (64, 40, 576), (300, 9, 240)):
        base = rng.choice(np.array([-128, 127, -127], np.int16), (m, k)) if m % 2 else \
            rng.integers(-128, 128, (m, k)).astype(np.int16)
        spots = [None, (0, 0), (m - 1, k - 1), (m // 2, min(k - 1, 32 + k // 3))]
        for spot, wide in itertools.product(spots, (128, -129, 32767, -32768)):
            if spot is None and wide != 128:
                continue
            a = base.copy()
            if spot is not None:
                a[spot] = wide
            b = rand_int(rng, tb, (k, n), (m + k) % 2 == 0)
            av, bv = operands(layout, a, b)
            want = (a.astype(np.int64) @ b.astype(np.int64)).astype(tc)
            got = vnni.gemm(av, bv, tc, variant="avx512vnni")
            assert np.array_equal(got, want), (m, n, k, spot, wide)
            assert np.array_equal(got, vnni.gemm(av, bv, tc, variant="portable")), (m, n, k, spot, wide)
            out = rand_int(rng, tc, (m, n), False) // 4
            acc = out.copy()
            vnni.gemm(av, bv, tc, out=acc, accumulate=True, variant="avx512vnni")
            assert np.array_equal(acc, (out.astype(np.int64) + want).astype(tc)), (m, n, k, spot, wide)


def _isa_in_subprocess(env: dict[str, str], value: str | None) -> tuple[str, int]:
    env = dict(env)
    env.pop("RCTC_ISA", None)
    if value is not None:
        env["RCTC_ISA"] = value
    code = ("from rctc.native.kernels import Kernels; k = Kernels(); "
            "print(k.isa, k.lib.rctc_isa_available())")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    name, mask = out.stdout.split()
    return name, int(mask)


def test_rctc_isa_caps_the_dispatched_variant(kernels: Kernels, native_env: dict[str, str]) -> None:
    """RCTC_ISA=portable|avx2|avx512vnni caps the choice for the whole process; an unknown value or a
    variant the CPU lacks leaves the best available (the mask then shows what runs)."""
    best, full = _isa_in_subprocess(native_env, None)
    assert (best, full) == (kernels.isa, kernels.lib.rctc_isa_available())
    assert _isa_in_subprocess(native_env, "portable") == ("portable", 1)
    if full & 2:
        assert _isa_in_subprocess(native_env, "avx2") == ("avx2", 3)
    assert _isa_in_subprocess(native_env, "avx512vnni") == (best, full)
    assert _isa_in_subprocess(native_env, "sse9") == (best, full)


_TRAIN = """
import hashlib, json, sys
import numpy as np
from threadpoolctl import threadpool_limits
from rctc.native.executor import NativeExecutor
from rctc.native.kernels import Kernels
from tests.native.test_backend import train
with threadpool_limits(limits=1, user_api="blas"):
    run = train("lenet", None if sys.argv[1] == "numpy" else NativeExecutor, int(sys.argv[2]))
h = hashlib.sha256()
for name in sorted(run["state"]):
    a = np.ascontiguousarray(run["state"][name])
    h.update(name.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
print(json.dumps({"isa": Kernels().isa, "loss": [float(x) for x in run["loss"]], "state": h.hexdigest(),
                  "stats": repr(run["stats"]), "changes": repr(run["changes"])}))
"""


def _train_in_subprocess(env: dict[str, str], isa: str | None, threads: int) -> dict[str, Any]:
    env = dict(env)
    env.pop("RCTC_ISA", None)
    if isa is not None:
        env["RCTC_ISA"] = isa
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _TRAIN, isa or "numpy", str(threads)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_lenet_training_is_identical_under_every_variant(kernels: Kernels, native_env: dict[str, str]) -> None:
    """A few rct steps of LeNet on the native backend with RCTC_ISA forced to each variant this CPU
    runs (1 and 2 threads) end in the numpy reference's state, losses, statistics and bit changes."""
    want = _train_in_subprocess(native_env, None, 1)  # isa None -> the numpy reference
    forced = ["portable", *[v for v in ("avx2", "avx512vnni") if kernels.has_variant(v)]]
    for isa in forced:
        for threads in (1, 2):
            got = _train_in_subprocess(native_env, isa, threads)
            assert got["isa"] == isa
            assert {k: got[k] for k in want if k != "isa"} == {k: want[k] for k in want if k != "isa"}, (isa, threads)

"""The avx512vnni GEMM's int16-weight products with and without the int8 narrowing, in one run.

    python benchmarks/native_gemm_narrow.py [--rounds 30] [--calls 20]

A weight slot at 8 bits or fewer is stored as int16 but holds int8 values; the avx512vnni kernel
then narrows it and runs the int8 x int8 product (x86/gemm_avx512.c). Here the same product runs
with an int8-range weight (narrowed) and with the same weight but one value at 200 (the int16
path), alternately in one process, on ResNet-20's convolution shapes for one image: the forward
product ``W (Cout, Cin*9) cols`` (K-contiguous A) and the data gradient ``W^T dY`` (an
M-contiguous view of A). A time is the fastest of ``--rounds`` rounds of ``--calls`` calls
(ctypes overhead included, the same in both); on a shared machine the fastest round is the
least disturbed. Needs a CPU with AVX-512 VNNI (otherwise it says so and exits).
"""

from __future__ import annotations

import argparse
import time

from _common import reexec_without_openblas_overrides

#: (M, N, K, A's contiguous axis): ResNet-20's three stages, forward then data gradient
SHAPES = ((16, 1024, 144, "k"), (32, 256, 288, "k"), (64, 64, 576, "k"),
          (144, 1024, 16, "m"), (288, 256, 32, "m"), (576, 64, 64, "m"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    reexec_without_openblas_overrides()
    import numpy as np

    from rctc.native.kernels import Kernels

    k = Kernels()
    if not k.has_variant("avx512vnni"):
        raise SystemExit("native_gemm_narrow: this CPU has no AVX-512 VNNI; the narrowing is that variant's")
    rng = np.random.default_rng(0)
    print("M x N x K, A layout: int16 path us, narrowed us, speed-up")
    for m, n, kk, lay in SHAPES:
        w = rng.integers(-127, 128, (kk, m) if lay == "m" else (m, kk)).astype(np.int16)
        wide = w.copy()
        wide[0, 0] = 200
        a8, a16 = (w.T, wide.T) if lay == "m" else (w, wide)
        b = rng.integers(-128, 128, (kk, n)).astype(np.int8)
        out = np.zeros((m, n), np.int32)
        best = {"int16": float("inf"), "narrowed": float("inf")}
        for _ in range(args.rounds):
            for path, a in (("int16", a16), ("narrowed", a8)):
                t = time.perf_counter()
                for _ in range(args.calls):
                    k.gemm(a, b, np.int32, out=out, variant="avx512vnni")
                best[path] = min(best[path], (time.perf_counter() - t) / args.calls)
        x, y = best["int16"] * 1e6, best["narrowed"] * 1e6
        print(f"{m} x {n} x {kk}, {lay.upper()}-contiguous A: {x:.1f}, {y:.1f}, x{x / y:.2f}")


if __name__ == "__main__":
    main()

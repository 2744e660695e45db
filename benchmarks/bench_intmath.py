"""Benchmark: exact integer GEMM through BLAS (int_matmul) vs numpy int64 matmul vs float GEMM.

Run from the repository root:  python benchmarks/bench_intmath.py [--m 256 --k 1152 --n 1024]

The default shape is an im2col convolution GEMM: 256 output positions, a 3x3 kernel
over 128 input channels (K = 1152), 1024 output channels.  For each
operand bitwidth pair it prints the best-of-N wall time of int_matmul, of numpy's
(non-BLAS) int64 matmul, and of a plain float32 / float64 matmul of the same
shape, and checks that int_matmul is bit-exact against the int64 result.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_seconds  # noqa: E402

from rctc.fixedpoint import int_dtype_for_bits, qmax_for_bits
from rctc.runtime.intmath import int_matmul, matmul_plan


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call), in milliseconds."""
    return best_seconds(fn, repeats) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--k", type=int, default=1152)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--int64-repeats", type=int, default=1, help="numpy int64 matmul is slow")
    args = ap.parse_args()
    m, k, n = args.m, args.k, args.n
    rng = np.random.default_rng(0)
    print(f"shape M x K x N = {m} x {k} x {n}; numpy {np.__version__}; times are best of {args.repeats}")

    af = rng.standard_normal((m, k)).astype(np.float32)
    bf = rng.standard_normal((k, n)).astype(np.float32)
    t_f32 = best_ms(lambda: af @ bf, args.repeats)
    ad, bd = af.astype(np.float64), bf.astype(np.float64)
    t_f64 = best_ms(lambda: ad @ bd, args.repeats)
    print(f"float32 matmul: {t_f32:9.2f} ms    float64 matmul: {t_f64:9.2f} ms")
    header = (f"{'bits':>7} {'path':>5} {'chunks':>6} {'int_matmul ms':>14} {'int64 np ms':>12} "
              f"{'speedup vs int64':>17} {'vs float32':>11} exact")
    print(header)
    for bits_a, bits_b in [(4, 4), (8, 8), (8, 12), (8, 16), (16, 16)]:
        qa, qb = qmax_for_bits(bits_a), qmax_for_bits(bits_b)
        a = rng.integers(-qa, qa + 1, size=(m, k)).astype(int_dtype_for_bits(bits_a))
        b = rng.integers(-qb, qb + 1, size=(k, n)).astype(int_dtype_for_bits(bits_b))
        amax, bmax = int(np.abs(a.astype(np.int64)).max()), int(np.abs(b.astype(np.int64)).max())
        path, chunk = matmul_plan(k, amax, bmax, m * n)
        t_int = best_ms(lambda a=a, b=b: int_matmul(a, b), args.repeats)
        a64, b64 = a.astype(np.int64), b.astype(np.int64)
        t_ref = best_ms(lambda a64=a64, b64=b64: a64 @ b64, args.int64_repeats)
        exact = bool(np.array_equal(int_matmul(a, b), a64 @ b64))
        print(f"{bits_a:>3}x{bits_b:<3} {path:>5} {-(-k // chunk):>6} {t_int:14.2f} {t_ref:12.1f} "
              f"{t_ref / t_int:16.1f}x {t_int / t_f32:10.2f}x {exact}")


if __name__ == "__main__":
    main()

"""Benchmark: rctc's RNG (Philox4x32-10 word stream) and state digest, numpy vs the C library.

Run from the repository root:  python benchmarks/bench_rng.py [--repeats 7]

For each range length it prints the best-of-N wall time of the numpy rounds (the specification,
``rctc.rng._words_numpy``), of ``rctc.rng.random_words`` (randomgen's C Philox, repositioned per
draw) and of ``rctc_random_words`` (``native/csrc/support/philox.c``
built with the system compiler, ``-O2``, called once through ctypes), in million words per second,
and checks the three are bit-identical.
Then the digest: ``rctc.digest.state_crc32`` (zlib) and ``rctc_crc32`` (the C 4-bit-table CRC)
in MB/s over the same bytes. One thread throughout (neither side threads), except one line: 16
``random_words`` requests of 16384 words (a transformer step's error roundings) on one thread, then
split 8 / 8 over two Python threads, each with its own randomgen generator: whether randomgen lets
a second thread draw while the first does (it does not when both times are about equal).

Like every script here it unsets ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` before numpy is
imported (users' machines do not set them) and prints the BLAS/OpenMP pools threadpoolctl sees.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_seconds, reexec_without_openblas_overrides  # noqa: E402

reexec_without_openblas_overrides()  # before numpy is imported anywhere

import argparse  # noqa: E402
import ctypes  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

from rctc.digest import state_crc32  # noqa: E402
from rctc.rng import _words_numpy, random_words  # noqa: E402

CSRC = Path(__file__).resolve().parents[1] / "native" / "csrc"
U32P = ctypes.POINTER(ctypes.c_uint32)


def build_c(out_dir: Path) -> ctypes.CDLL | None:
    cc = shutil.which(os.environ.get("CC") or "cc")
    if cc is None:
        return None
    so = out_dir / "rctc_rng_bench.so"
    srcs = [str(CSRC / "support" / "philox.c"), str(CSRC / "support" / "digest.c")]
    cmd = [cc, "-std=c99", "-O2", "-shared", "-fPIC", f"-I{CSRC / 'include'}", *srcs, "-o", str(so)]
    subprocess.run(cmd, check=True)
    lib = ctypes.CDLL(str(so))
    lib.rctc_random_words.argtypes = [
        ctypes.c_uint64,
        ctypes.c_uint32,
        ctypes.c_uint32,
        ctypes.c_uint64,
        ctypes.c_size_t,
        U32P,
    ]
    lib.rctc_random_words.restype = None
    lib.rctc_crc32.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]
    lib.rctc_crc32.restype = ctypes.c_uint32
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"C: {' '.join(cmd[:5])} ... ({version})")
    return lib


def _two_threads_line(seed: int, step: int, repeats: int, requests: int = 16, count: int = 1 << 14) -> str:
    """The best time of ``requests`` draws of ``count`` words on one thread, and split over two."""

    def draw(nodes: range) -> None:
        for node in nodes:
            random_words(seed, step, node, 0, count)

    def split() -> None:
        half = requests // 2
        other = threading.Thread(target=draw, args=(range(half, requests),))
        other.start()
        draw(range(half))
        other.join()

    one = best_seconds(lambda: draw(range(requests)), repeats)
    two = best_seconds(split, repeats)
    return (f"{requests} random_words requests of {count} words: {one * 1e3:.2f} ms on one thread, "
            f"{two * 1e3:.2f} ms split over two ({one / two:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    print(f"numpy {np.__version__}; best of {args.repeats}; OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset")
    print("thread pools:", [(p["internal_api"], p.get("num_threads")) for p in threadpool_info()])
    with tempfile.TemporaryDirectory() as tmp:
        lib = build_c(Path(tmp))
        if lib is None:
            print("no C compiler: the C column is skipped")
        seed, step, node = 0x0123456789ABCDEF, 7, 3
        print(f"{'words':>9} {'rounds Mword/s':>14} {'random_words':>12} {'C Mword/s':>10} {'C / random_words':>16}"
              " identical")
        for count in (1 << 10, 1 << 14, 1 << 18, 1 << 22):
            t_rounds = best_seconds(lambda n=count: _words_numpy(seed, step, node, 1, n), args.repeats)
            t_np = best_seconds(lambda n=count: random_words(seed, step, node, 1, n), args.repeats)
            ref = _words_numpy(seed, step, node, 1, count)
            same = bool(np.array_equal(random_words(seed, step, node, 1, count), ref))
            head = f"{count:>9} {count / t_rounds / 1e6:14.1f} {count / t_np / 1e6:12.1f}"
            if lib is None:
                print(f"{head} {'':>10} {'':>16} {same}")
                continue
            out = np.empty(count, dtype=np.uint32)
            ptr = out.ctypes.data_as(U32P)
            t_c = best_seconds(lambda n=count, p=ptr: lib.rctc_random_words(seed, step, node, 1, n, p), args.repeats)
            same = same and bool(np.array_equal(out, ref))
            print(f"{head} {count / t_c / 1e6:10.1f} {t_np / t_c:15.1f}x {same}")
        print(_two_threads_line(seed, step, args.repeats))
        data = np.random.default_rng(0).integers(-128, 128, size=1 << 22).astype(np.int8)
        t_py = best_seconds(lambda: state_crc32([("w", data, -7)]), args.repeats)
        line = f"digest over {data.nbytes >> 20} MiB: zlib (rctc.digest) {data.nbytes / t_py / 1e6:.0f} MB/s"
        if lib is not None:
            t_cc = best_seconds(lambda: lib.rctc_crc32(0, data.ctypes.data, data.nbytes), args.repeats)
            line += f", C rctc_crc32 {data.nbytes / t_cc / 1e6:.0f} MB/s"
        print(line)


if __name__ == "__main__":
    main()

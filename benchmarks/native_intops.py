"""Time of the native integer element-wise kernels (rctc_intops.h) beside their intref numpy
specifications, on activation-sized tensors of a batch-32 step, in one run.

Usage: ``python benchmarks/native_intops.py [--min-seconds 0.3] [--only NAME] [-o benchmarks/NATIVE_INTOPS.md]``.

For each kernel: intref (numpy), the dispatched C kernel, and where a SIMD variant exists the
portable and AVX2 variants by name (ReLU, ReLU backward, requantize's int8 rounding), each
checked bit-identical to intref before it is timed. A time is the median of repeated calls (at
least 5 and ``--min-seconds``). ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are removed from
the environment before numpy loads (the script re-executes itself without them) and the BLAS
numpy loaded is recorded with threadpoolctl.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median_seconds, reexec_without_openblas_overrides, write_atomic  # noqa: E402

reexec_without_openblas_overrides()  # before numpy is imported anywhere

import argparse  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

from rctc.native.intops import IntOps  # noqa: E402
from rctc.runtime.intref import arith, core, expo, gelu, norm, pointwise, pool  # noqa: E402

HERE = Path(__file__).resolve().parent


def timed(fn: Callable[[], object], min_seconds: float) -> float:
    """Median milliseconds of ``fn`` over at least 5 calls and ``min_seconds``."""
    return median_seconds(fn, min_seconds) * 1e3


def same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(same(x, y) for x, y in zip(a, b))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-seconds", type=float, default=0.3)
    ap.add_argument("-o", "--output", type=Path, default=HERE / "NATIVE_INTOPS.md")
    ap.add_argument("--only", default="", help="time only the kernels whose name contains this")
    args = ap.parse_args()
    ops = IntOps()
    rng = np.random.default_rng(0)
    act = rng.integers(-127, 128, (32, 64, 32, 32)).astype(np.int8)  # a ResNet-8 stage-1 activation
    err = rng.integers(-127, 128, act.shape).astype(np.int8)
    acc = rng.integers(-(2**40), 2**40, act.size, dtype=np.int64)
    s = core.requant_shift(core.absmax(acc), 8, False)
    small = act[:, :16]
    errs = err[:, :16]
    words = rng.integers(0, 2**32, small.shape, dtype=np.uint32)
    gam = (rng.integers(-127, 128, 16).astype(np.int8), -6)
    bet = (rng.integers(-127, 128, 16).astype(np.int8), -4)
    rs = ((np.zeros(16, np.int16), -8), (np.ones(16, np.int16), -8))
    logits = rng.integers(-127, 128, (32, 10)).astype(np.int8)
    labels = rng.integers(0, 10, 32)
    cases: list[tuple[str, Callable[[], object], Callable[[], object], dict[str, Callable[[], object]]]] = [
        ("relu", lambda: pointwise.relu(act, -4), lambda: ops.relu(act, -4),
         {v: (lambda v=v: ops.relu_s8(act, v)) for v in ("portable", "avx2")}),
        ("relu_backward", lambda: pointwise.relu_backward(act, -4, err, -6),
         lambda: ops.relu_backward(act, -4, err, -6),
         {v: (lambda v=v: ops.relu_s8(act, v, err)) for v in ("portable", "avx2")}),
        ("maxpool2d 2x2/2", lambda: pool.maxpool2d(act, -4, (2, 2), (2, 2)),
         lambda: ops.maxpool2d(act, -4, (2, 2), (2, 2)), {}),
        ("requantize int64->int8", lambda: core.requantize(acc, -20, 8), lambda: ops.requantize(acc, -20, 8),
         {v: (lambda v=v: ops.round_s8(acc, s, None, v)) for v in ("portable", "avx2")}),
        ("leaky_relu", lambda: pointwise.leaky_relu(act, -4), lambda: ops.leaky_relu(act, -4), {}),
        ("hardswish", lambda: pointwise.hardswish(act, -4), lambda: ops.hardswish(act, -4), {}),
        ("gelu (i-GELU)", lambda: gelu.gelu(small, -4), lambda: ops.gelu(small, -4), {}),
        ("batchnorm_train (32x16x32x32)", lambda: norm.batchnorm_train(small, -4, gam, bet, *rs),
         lambda: ops.batchnorm_train(small, -4, gam, bet, *rs), {}),
        ("batchnorm_backward (32x16x32x32)", lambda: norm.batchnorm_backward(small, -4, gam, errs, -6, 1e-5, 8, words),
         lambda: ops.batchnorm_backward(small, -4, gam, errs, -6, 1e-5, 8, words), {}),
        ("add int8+int8 (32x64x32x32)", lambda: arith.add(act, -4, err, -6), lambda: ops.add(act, -4, err, -6), {}),
        ("softmax_cross_entropy_backward (32x10)", lambda: expo.softmax_cross_entropy_backward(logits, -3, labels),
         lambda: ops.softmax_cross_entropy_backward(logits, -3, labels), {}),
    ]
    rows = []
    load0 = os.getloadavg()[0]
    for name, ref, nat, variants in (c for c in cases if args.only in c[0]):
        assert same(ref(), nat()), name
        if variants:
            assert same(variants["portable"](), variants["avx2"]()), name
        t_ref, t_nat = timed(ref, args.min_seconds), timed(nat, args.min_seconds)
        tv = {v: timed(f, args.min_seconds) for v, f in variants.items()} if ops.has_avx2() else {}
        rows.append((name, t_ref, t_nat, tv.get("portable"), tv.get("avx2")))
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('threading_layer')}, {i.get('num_threads')} threads)"
            for i in threadpool_info()]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["# Native integer element-wise kernels vs intref (numpy)", "",
             f"Command: `python benchmarks/native_intops.py --min-seconds {args.min_seconds}"
             + (f" --only '{args.only}'" if args.only else "") + "`; one run, 1 thread; "
             "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset. numpy's BLAS (threadpoolctl): " + "; ".join(blas) + ". "
             f"1-min load at the start / end: {load0:.2f} / {os.getloadavg()[0]:.2f}.",
             f"Dispatched ISA: {'avx2' if ops.has_avx2() else 'portable'}. Every result checked bit-identical to "
             "intref (and AVX2 to portable) before timing. Median ms per call; the variant columns time the "
             "named inner loop alone (requantize: the int8 rounding loop without the max pass).", "",
             "| kernel | intref numpy ms | C dispatched ms | speed-up | C portable ms | C AVX2 ms |",
             "|---|---|---|---|---|---|"]
    for name, tr, tn, tp, ta in rows:
        lines.append(f"| {name} | {tr:.3f} | {tn:.3f} | {tr / tn:.1f}x | {fmt(tp)} | {fmt(ta)} |")
    text = "\n".join(lines) + "\n"
    write_atomic(args.output, text)
    print(text)


if __name__ == "__main__":
    main()

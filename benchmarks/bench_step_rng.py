"""Benchmark: what the counter-based RNG costs a numpy-reference rct training step.

Run from the repository root:  python benchmarks/bench_step_rng.py [--models mlp lenet resnet8] [--steps 5]

For each bundled model (rct mode, batch 32, seed 0, random data) it times ``--steps`` training
steps after one warm-up step and prints, per step: the wall time, the random words the step's
needs-rng kernels drew (``KernelContext.words``) and the wall time spent drawing them. Two
threads for BLAS (threadpoolctl, in a scope); the word stream itself is single-threaded numpy.

Like every script here it unsets ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` before numpy is
imported (users' machines do not set them) and prints the BLAS/OpenMP pools threadpoolctl saw.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import rctc  # noqa: E402
from rctc import models  # noqa: E402
from rctc.runtime.kernels.registry import KernelContext  # noqa: E402

BATCH = 32


def measure(name: str, steps: int) -> dict[str, float]:
    m = rctc.compile(str(models.path(name)), mode="rct", batch_size=BATCH, seed=0)
    _, shape, dtype = models.input_spec(name)
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        x = rng.integers(0, 8, (BATCH, *shape)).astype(dtype)
    else:
        x = rng.standard_normal((BATCH, *shape)).astype(dtype)
    y = rng.integers(0, models.num_classes(name), BATCH)
    t = m.trainer(0)
    mask = np.ones(BATCH, np.float32)
    drawn = {"s": 0.0, "words": 0}
    orig = KernelContext.words

    def timed(self, node, shape, *, start=0, draw=0):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        w = orig(self, node, shape, start=start, draw=draw)
        drawn["s"] += time.perf_counter() - t0
        drawn["words"] += w.size
        return w

    KernelContext.words = timed  # type: ignore[method-assign]
    try:
        t.train_step(x, y, mask, 0.01)  # warm-up (schedules, caches)
        drawn.update(s=0.0, words=0)
        t0 = time.perf_counter()
        for _ in range(steps):
            t.train_step(x, y, mask, 0.01)
        wall = (time.perf_counter() - t0) / steps
    finally:
        KernelContext.words = orig  # type: ignore[method-assign]
    return {"model": name, "ms_per_step": 1e3 * wall, "rng_ms_per_step": 1e3 * drawn["s"] / steps,
            "words_per_step": drawn["words"] / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mlp", "lenet", "resnet8", "mobilenet", "tiny_transformer"])
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    with threadpool_limits(limits=2, user_api="blas"):
        for name in args.models:
            r = measure(name, args.steps)
            share = r["rng_ms_per_step"] / r["ms_per_step"]
            print(json.dumps(r), f"# RNG {100 * share:.0f}% of the step", flush=True)
        pools = [(p["internal_api"], p.get("num_threads"), p.get("architecture")) for p in threadpool_info()]
    print(f"threadpoolctl pools: {pools}; load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

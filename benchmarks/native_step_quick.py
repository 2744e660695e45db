"""Quick check of the native backend: ms/step of rct training, numpy vs native, and the share of
nodes in C (not the official peers run: benchmarks/run_benchmarks.py is).

    python benchmarks/native_step_quick.py [--batch 32] [--threads 2] [--one-blas-thread] [MODEL ...]

Each model is compiled in rct mode, trained 2 warm-up steps and then timed over a few steps on
random data with the bitwidth controller attached, once per backend; OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are unset (as for every peer). ``--one-blas-thread`` runs numpy's BLAS on one
thread (on a loaded 2-core machine OpenBLAS threads busy-wait).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import reexec_without_openblas_overrides

MODELS = ["mlp", "lenet", "resnet8", "resnet20", "mobilenet", "tiny_transformer"]


def ms_per_step(name: str, native: bool, batch: int, threads: int, steps: int) -> tuple[float, tuple[int, int]]:
    import rctc
    from rctc.models import path as model_path
    from rctc.native.executor import NativeExecutor
    from rctc.runtime.controller import attach_controller
    from rctc.runtime.trainer import Trainer

    g = rctc.compile(model_path(name), mode="rct", batch_size=batch).graph
    ex = NativeExecutor(g, threads) if native else None
    t = Trainer(g, 0, ex)
    attach_controller(t)
    t.prepare()
    inp, rng = g.value(g.meta["model_inputs"][0]), np.random.default_rng(0)
    n = (steps + 2) * batch
    if np.dtype(inp.dtype).kind in "iu":
        x = rng.integers(0, 16, (n, *inp.shape[1:])).astype(inp.dtype)
    else:
        x = rng.standard_normal((n, *inp.shape[1:])).astype(np.float32)
    y, order = rng.integers(0, int(g.meta["num_classes"]), n), np.arange(n)
    for s in range(2):
        t.train_step(*t.batch_at(x, y, order, s), 0.05)
    t0 = time.perf_counter()
    for s in range(2, steps + 2):
        t.train_step(*t.batch_at(x, y, order, s), 0.05)
    outs = list(dict.fromkeys([g.meta["loss"], g.meta["logits"], *g.state_updates.values()]))
    share = ex.share_in_c(outs) if ex is not None else (0, len(t.executor.schedule(outs)))
    return (time.perf_counter() - t0) / steps * 1e3, share


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=MODELS)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--one-blas-thread", action="store_true")
    args = ap.parse_args()
    if args.one_blas_thread:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, "blas")
    for name in args.models:
        a, _ = ms_per_step(name, False, args.batch, args.threads, args.steps)
        b, (in_c, total) = ms_per_step(name, True, args.batch, args.threads, args.steps)
        print(f"{name:18s} numpy {a:8.1f} ms/step  native {b:8.1f} ms/step  x{a / b:4.1f}  "
              f"nodes in C {in_c}/{total}", flush=True)


if __name__ == "__main__":
    reexec_without_openblas_overrides()
    main()

"""Quick check of the native backend: ms/step of rct training, numpy vs native, and the share of
nodes in C (not the official peers run: benchmarks/run_benchmarks.py is).

    python benchmarks/native_step_quick.py [--batch 32] [--threads 2] [--one-blas-thread] [--torch] [MODEL ...]

Each model is compiled in rct mode, trained 2 warm-up steps and then timed over a few steps on
random data with the bitwidth controller attached, once per backend; OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are unset (as for every peer). ``--one-blas-thread`` runs numpy's BLAS on one
thread (on a loaded 2-core machine OpenBLAS threads busy-wait). Each line also gives the native
step's CPU time (process time: on a machine other jobs load, wall time includes waiting for a
core) and the 1-minute load average; ``--torch`` runs PyTorch fp32 eager and eager QAT
(benchmarks/peers_torch.py, a fresh interpreter each, ``--threads`` threads) on the same model
and batch right after, with the ratio native / PyTorch.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import reexec_without_openblas_overrides

MODELS = ["mlp", "lenet", "resnet8", "resnet20", "mobilenet", "tiny_transformer"]


def ms_per_step(name: str, native: bool, batch: int, threads: int,
                steps: int) -> tuple[float, tuple[int, int], float]:
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
    t0, c0 = time.perf_counter(), time.process_time()
    for s in range(2, steps + 2):
        t.train_step(*t.batch_at(x, y, order, s), 0.05)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    outs = list(dict.fromkeys([g.meta["loss"], g.meta["logits"], *g.state_updates.values()]))
    share = ex.share_in_c(outs) if ex is not None else (0, len(t.executor.schedule(outs)))
    if ex is not None and ex.fallbacks():
        print(f"  note: {ex.fallbacks()} C segment runs fell back to numpy", flush=True)
    return wall / steps * 1e3, share, cpu / steps * 1e3


def torch_ms(name: str, peer: str, batch: int, threads: int) -> float | None:
    """Median ms/step of a PyTorch peer (None when it failed: the error is printed)."""
    from _common import run_in_subprocess, thread_env

    res = run_in_subprocess(peer, name, batch, env=thread_env(threads))
    if "error" in res:
        print(f"  {peer}: {res['error']}", flush=True)
        return None
    return float(res["ms_per_step_median"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=MODELS)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--one-blas-thread", action="store_true")
    ap.add_argument("--torch", action="store_true", help="also run PyTorch fp32 eager and eager QAT")
    args = ap.parse_args()
    if args.one_blas_thread:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, "blas")
    for name in args.models:
        a, _, _ = ms_per_step(name, False, args.batch, args.threads, args.steps)
        b, (in_c, total), cpu = ms_per_step(name, True, args.batch, args.threads, args.steps)
        print(f"{name:18s} numpy {a:8.2f} ms/step  native {b:8.3f} ms/step (cpu {cpu:7.3f})  x{a / b:4.1f}  "
              f"nodes in C {in_c}/{total}  load {os.getloadavg()[0]:.1f}", flush=True)
        if args.torch:
            for peer in ("torch_fp32", "torch_qat"):
                ms = torch_ms(name, peer, args.batch, args.threads)
                if ms is not None:
                    print(f"{'':18s} {peer:10s} {ms:8.3f} ms/step  native / {peer} {b / ms:5.2f}  "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    reexec_without_openblas_overrides()
    main()

"""The rctc side of the side-by-side benchmark: one training step of a compiled model.

Peers ``rctc_native`` (rct mode on the native C backend), ``rctc_rct`` (rct mode on the numpy
runtime), ``rctc_qat``, ``rctc_fp32`` (numpy): the models/ network compiled in that mode (SGD,
batch B), a step = ``Trainer.train_step`` on a fixed random batch (forward, loss, backward,
update, bitwidth controller). Also reports the compile time, the kernels that ran
(threadpoolctl; for the native backend the dispatched C variant) and, for the numpy runtime,
from a few extra steps after the timed ones, the wall time per op type (``op_ms_per_step``).
When the native backend cannot run (no compiler, a failed build, an rctc without it), ``rctc_native``
prints ``{"unavailable": reason}`` instead of a time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from _common import make_batch, peer_parser, result_dict, time_steps, timing_kwargs  # noqa: E402

PEERS = ("rctc_native", "rctc_rct", "rctc_qat", "rctc_fp32")


class NativeUnavailable(Exception):
    """The native backend cannot run here; the message says why."""


def native_trainer(graph: Any, seed: int) -> Any:
    """A Trainer of ``graph`` on the native backend (``rctc.native.backend``, 2 threads); raises
    :class:`NativeUnavailable` with the reason when it cannot run here (the backend's own line)."""
    from rctc.runtime.trainer import Trainer

    try:
        from rctc.native.backend import choose, make_executor
    except ImportError as exc:
        raise NativeUnavailable(f"this rctc has no native training backend ({exc})") from exc
    choice = choose("native", graph)
    if choice.name != "native":
        raise NativeUnavailable((choice.note or f"the backend chose {choice.name}").removeprefix(
            "using the numpy runtime: "))
    try:
        return Trainer(graph, seed=seed, executor=make_executor("native", graph, threads=_common.NUM_THREADS))
    except Exception as exc:  # noqa: BLE001 - any failure to set up the backend is the reason
        raise NativeUnavailable(f"{type(exc).__name__}: {exc}") from exc


def native_facts(t: Any) -> dict[str, Any]:
    """What the native step ran on: the dispatched C variant, its threads, the nodes in C."""
    from rctc.native.kernels import Kernels

    ex = t.executor
    c_nodes = total = 0
    for outputs, training in ex.schedules():  # the schedules the timed steps ran
        c, n = ex.share_in_c(list(outputs), training)
        c_nodes, total = c_nodes + c, total + n
    return {"native_isa": Kernels().isa, "native_threads": ex.threads, "native_nodes_in_c": [c_nodes, total]}


def main(argv: list[str] | None = None) -> int:
    args = peer_parser(PEERS).parse_args(argv)
    import numpy as np

    import rctc
    from rctc.models import build, input_spec, num_classes
    from rctc.runtime.controller import attach_controller
    from rctc.runtime.trainer import Trainer

    native = args.peer == "rctc_native"
    mode = "rct" if native else args.peer.split("_", 1)[1]
    proto = build(args.model)
    t0 = time.perf_counter()
    m = rctc.compile(proto, mode=mode, batch_size=args.batch, lr=0.01, seed=args.seed)
    compile_s = time.perf_counter() - t0
    _, shape, dtype = input_spec(args.model)
    x, y = make_batch(shape, str(np.dtype(dtype)), args.batch, num_classes(args.model), seed=args.seed)
    extra: dict[str, Any] = {}
    mask = np.ones(args.batch, np.float32)
    if native:
        t0 = time.perf_counter()
        try:
            t = native_trainer(m.graph, args.seed)
            attach_controller(t)
            t.train_step(x, y, mask, 0.01)  # generates, builds (or loads the cached) C step: a setup failure
        except NativeUnavailable as exc:  # is the reason the column is n/a, never a number
            print(json.dumps({"unavailable": str(exc), "peak_rss_bytes": _common.peak_rss_bytes()}))
            return 0
        except Exception as exc:  # noqa: BLE001
            print(json.dumps({"unavailable": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                              "peak_rss_bytes": _common.peak_rss_bytes()}))
            return 0
        extra["native_setup_seconds"] = time.perf_counter() - t0
    else:
        t = Trainer(m.graph, seed=args.seed)
        attach_controller(t)
    ms = time_steps(lambda: t.train_step(x, y, mask, 0.01), **timing_kwargs(args))
    backend = "native C backend" if native else "numpy runtime"
    if native:
        extra.update(native_facts(t))
    res = result_dict(ms, compile_seconds=compile_s, note=f"rctc {mode} mode, SGD, {backend}",
                      kernels=_common.kernel_info(), **extra)
    if not native:
        # after timing (never during it): wall time per op type over a few more steps
        t.executor.op_times = {}
        n_prof = max(3, min(10, len(ms)))
        for _ in range(n_prof):
            t.train_step(x, y, mask, 0.01)
        res["op_ms_per_step"] = {k: round(v * 1e3 / n_prof, 4) for k, v in
                                 sorted(t.executor.op_times.items(), key=lambda kv: -kv[1])}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

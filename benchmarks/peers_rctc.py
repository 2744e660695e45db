"""The rctc side of the side-by-side benchmark: one training step of a compiled model.

Peers ``rctc_native`` (rct mode on the native C backend), ``rctc_rct`` (rct mode on the numpy
runtime), ``rctc_qat``, ``rctc_fp32`` (numpy): the models/ network compiled in that mode (SGD,
batch B), a step = ``Trainer.train_step`` on a fixed random batch (forward, loss, backward,
update, bitwidth controller). Also reports the compile time, the kernels that ran
(threadpoolctl; for the native backend the dispatched C variant) and, for the numpy runtime,
from a few extra steps after the timed ones, the wall time per op type (``op_ms_per_step``).
When the native backend cannot run, ``rctc_native`` prints ``{"unavailable": reason}``.
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


def native_trainer(graph: Any, seed: int) -> tuple[Any, dict[str, Any]]:
    """A Trainer of ``graph`` on the native backend and what it runs on (C variant, threads);
    raises :class:`NativeUnavailable` with the reason when there is none."""
    import inspect

    from rctc.runtime.trainer import Trainer

    if "backend" not in inspect.signature(Trainer).parameters:
        raise NativeUnavailable("this rctc has no native training backend (Trainer takes no backend=)")
    try:
        t = Trainer(graph, seed=seed, backend="native")
    except Exception as exc:  # noqa: BLE001 - any failure to set up the backend is the reason
        raise NativeUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if getattr(t, "backend", "native") != "native":
        raise NativeUnavailable(f"the Trainer fell back to {t.backend!r}")
    from rctc.native.kernels import Kernels

    return t, {"native_isa": Kernels().isa, "native_threads": _common.NUM_THREADS}


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
    if native:
        t0 = time.perf_counter()
        try:
            t, extra = native_trainer(m.graph, args.seed)
        except NativeUnavailable as exc:
            print(json.dumps({"unavailable": str(exc), "peak_rss_bytes": _common.peak_rss_bytes()}))
            return 0
        extra["native_setup_seconds"] = time.perf_counter() - t0
    else:
        t = Trainer(m.graph, seed=args.seed)
    attach_controller(t)
    mask = np.ones(args.batch, np.float32)
    ms = time_steps(lambda: t.train_step(x, y, mask, 0.01), **timing_kwargs(args))
    backend = "native C backend" if native else "numpy runtime"
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

"""The rctc side of the side-by-side benchmark: one training step of a compiled model.

Peers ``rctc_rct``, ``rctc_qat``, ``rctc_fp32``: the models/ network compiled in that mode
(SGD, batch B), a step = ``Trainer.train_step`` on a fixed random batch (forward, loss,
backward, update, bitwidth controller). Also reports the compile time of the model and, from a few
extra steps after the timed ones, the wall time per op type (``op_ms_per_step``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import make_batch, peer_parser, result_dict, time_steps, timing_kwargs  # noqa: E402

PEERS = ("rctc_rct", "rctc_qat", "rctc_fp32")


def main(argv: list[str] | None = None) -> int:
    args = peer_parser(PEERS).parse_args(argv)
    import numpy as np

    import rctc
    from rctc.models import build, input_spec, num_classes
    from rctc.runtime.trainer import Trainer

    mode = args.peer.split("_", 1)[1]
    proto = build(args.model)
    t0 = time.perf_counter()
    m = rctc.compile(proto, mode=mode, batch_size=args.batch, lr=0.01, seed=args.seed)
    compile_s = time.perf_counter() - t0
    _, shape, dtype = input_spec(args.model)
    x, y = make_batch(shape, str(np.dtype(dtype)), args.batch, num_classes(args.model), seed=args.seed)
    t = Trainer(m.graph, seed=args.seed)
    from rctc.runtime.controller import attach_controller

    attach_controller(t)
    mask = np.ones(args.batch, np.float32)
    ms = time_steps(lambda: t.train_step(x, y, mask, 0.01), **timing_kwargs(args))
    res = result_dict(ms, compile_seconds=compile_s, note=f"rctc {mode} mode, SGD")
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

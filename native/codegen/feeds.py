"""The inputs of N device training steps, made on the host exactly as ``rctc train --no-shuffle`` makes them.

Needs: a compiled model (``rctc.api.CompiledModel``), the training arrays, the step count, the
seed and the learning rate, and the names of the generated step's inputs. Leaves: a
:class:`StepFeeds`: per input value one array ``[steps, *shape]`` in the value's dtype, the
learning rate of every step as an exact integer pair, seed and first step. The model's state
is left as it was.

The batches are the trainer's: step ``i`` of the run takes batch ``i mod (n // batch)`` of the
data in file order (``Trainer.batch_at``, no shuffling, no padded last batch). The host's data
pipeline runs here, on the host, with the numpy kernels: the input quantiser (``QuantAct`` of
the graph input, exponent from the batch's max, its float running range carried from step to
step as the trainer carries it), so the device receives int8 samples and their exponent, as a
sensor would deliver them, and never holds a float.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rctc.analysis.arena import host_state, input_quantisers
from rctc.errors import DataError, RctcError
from rctc.native.codegen.runner import exact_pair
from rctc.runtime.kernels import KernelContext
from rctc.runtime.trainer import LRSchedule, Trainer, epoch_batches


@dataclass
class StepFeeds:
    """What the device needs to run steps ``first_step .. first_step + steps - 1``."""

    inputs: dict[str, np.ndarray]  # value name -> [steps, *shape]
    lr_m: np.ndarray  # int64 [steps]: lr of step i == lr_m[i] * 2^lr_k[i] exactly (the float32 lr)
    lr_k: np.ndarray  # int32 [steps]
    seed: int
    first_step: int
    steps: int


def step_feeds(model: object, x: np.ndarray, y: np.ndarray, steps: int, seed: int | None, lr: float | None,
               inputs: list[str], source: str = "data") -> StepFeeds:
    """The per-step values of ``inputs`` (graph inputs or outputs of the host's data pipeline)."""
    g = model.graph  # type: ignore[attr-defined]
    if steps < 1:
        raise RctcError(f"--steps must be >= 1, got {steps}")
    xs = model._x(x, source)  # type: ignore[attr-defined]  # the trainer's own input checks
    ys = model._y(y, len(xs), source)  # type: ignore[attr-defined]
    seed = int(model.options.seed if seed is None else seed)  # type: ignore[attr-defined]
    t = Trainer(g, seed)
    per_epoch = epoch_batches(len(xs), t.batch, keep_last=False)
    if per_epoch == 0:
        raise DataError(f"{source}: {len(xs)} samples are fewer than the compiled batch size {t.batch}")
    base = float(lr if lr is not None else model.options.lr)  # type: ignore[attr-defined]
    schedule = LRSchedule(base, "constant", steps, 0, start=t.step)
    produced = {o.name for n in g.nodes for o in n.outputs}
    pipeline = {o.name for n in input_quantisers(g) for o in n.outputs}
    for name in inputs:
        if name in produced and name not in pipeline:
            raise RctcError(f"device step: input {name!r} is computed on the host by a node outside the data "
                            "pipeline; this model cannot run on the device")
    host = sorted(host_state(g))
    saved = {name: g.value(name).data for name in host}
    updates = {s: g.state_updates[s] for s in host if s in g.state_updates}
    wanted = sorted({n for n in inputs if n in pipeline} | set(updates.values()))
    per_input: dict[str, list[np.ndarray]] = {name: [] for name in inputs}
    lr_m, lr_k = [], []
    order = np.arange(len(xs))
    try:
        for i in range(steps):
            step = t.step + i
            xb, yb, mb = t.batch_at(xs, ys, order, i % per_epoch)
            rate = schedule(step)
            feeds = t.feeds(xb, yb, mb, rate)
            feeds = {k: np.asarray(v).astype(g.value(k).dtype, copy=False) for k, v in feeds.items()}
            out = t.executor.run(feeds, wanted, KernelContext(training=True, seed=seed, step=step)) if wanted else {}
            for state, new in updates.items():
                g.value(state).data = out[new]
            for name in inputs:
                per_input[name].append(np.asarray(out[name] if name in pipeline else feeds[name]))
            m, k = exact_pair(float(np.float32(rate)))
            lr_m.append(m)
            lr_k.append(k)
    finally:
        for name, data in saved.items():
            g.value(name).data = data
    return StepFeeds(
        {name: np.stack(vals).astype(g.value(name).dtype, copy=False) for name, vals in per_input.items()},
        np.asarray(lr_m, np.int64), np.asarray(lr_k, np.int32), seed, t.step, steps)


__all__ = ["StepFeeds", "step_feeds"]

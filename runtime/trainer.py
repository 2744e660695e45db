"""The training loop over a compiled graph: batching, steps, NaN guard, evaluation.

Randomness: every random bit of a training step (dropout masks, stochastic rounding) comes
from rctc's counter-based stream keyed by ``(seed, step, node id)`` (``rctc.rng``, docs/rng.md),
so the step's randomness is a function of the seed and the step alone and a checkpoint needs
no generator state for it. Shuffling happens outside the step and keeps a numpy generator,
``data_rng``, whose state a checkpoint stores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rctc.errors import DataError, RctcError, TrainingDiverged
from rctc.ir import Graph
from rctc.runtime.executor import Executor, OnNode
from rctc.runtime.kernels import KernelContext
from rctc.runtime.kernels.registry import DrawPlan
from rctc.slots import bits_value, has_slot


@dataclass
class LRSchedule:
    """Learning rate at a trainer step: linear warmup over ``warmup_steps``, then constant, step
    (x ``gamma`` every ``step_size`` steps, default a third of the rest) or cosine decay to 0 at
    ``total_steps``. Steps count from ``start``, the trainer step the run began at."""

    base: float
    kind: str = "constant"
    total_steps: int = 1
    warmup_steps: int = 0
    step_size: int = 0
    gamma: float = 0.1
    start: int = 0

    def __call__(self, step: int) -> float:
        step -= self.start
        if self.warmup_steps and step < self.warmup_steps:
            return self.base * (step + 1) / self.warmup_steps
        s = step - self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        if self.kind == "cosine":
            return self.base * 0.5 * (1 + math.cos(math.pi * min(s, span) / span))
        if self.kind == "step":
            size = self.step_size or max(span // 3, 1)
            return self.base * self.gamma ** (s // size)
        return self.base


@dataclass
class StepRecord:
    step: int
    epoch: int
    loss: float
    accuracy: float | None
    lr: float
    stats: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Runs training steps of one compiled graph and keeps the run state."""

    def __init__(self, graph: Graph, seed: int = 0, executor: Executor | None = None) -> None:
        self.graph = graph
        #: runs the steps: the numpy reference, or a backend's subclass (the native one) over the same graph
        self.executor = executor if executor is not None else Executor(graph)
        self.meta = graph.meta
        self.batch = int(graph.value(self.meta["model_inputs"][0]).shape[0])
        mask_in = graph.values.get("sample_mask")
        # uint8 0/1 in integer rct graphs (the integer loss reads it), float32 elsewhere
        self.mask_dtype = np.dtype(mask_in.dtype if mask_in is not None and mask_in.dtype is not None else np.float32)
        self.step = int(self.meta.get("step", 0))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 1 << 64:
            raise RctcError(f"seed must be an integer in [0, 2^64), got {seed!r}")
        #: the key of the step's random stream (with the step and each node's id)
        self.seed = int(seed)
        self._draws = DrawPlan()  # batches each step's small random draws (the same words)
        # shuffling keyed by the step training starts from, so a second `rctc train` of the same
        # .rct draws fresh shuffles (the step's stream moves on with the step by itself)
        self.data_rng = np.random.default_rng([self.seed, 1, self.step])
        self.hooks: list[Callable[[Trainer, StepRecord], None]] = []
        # sees every node a training step executes (the energy counter, rctc.analysis.counter)
        self.on_node: OnNode | None = None
        # (parameter name, Value of its bits): the controller replaces the Value's data, never the Value
        self._slots = [(p.name, bits_value(graph, p)) for p in graph.params() if has_slot(p)]

    # ----- batching ------------------------------------------------------
    def epoch_order(self, n: int, shuffle: bool) -> np.ndarray:
        """The sample order of a new epoch (drawn from ``data_rng`` when shuffling)."""
        return self.data_rng.permutation(n) if shuffle else np.arange(n)

    def batch_at(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, b: int) -> tuple:
        """Batch ``b`` of an epoch with sample ``order``; a last partial batch is padded and masked."""
        idx = order[b * self.batch:(b + 1) * self.batch]
        if len(idx) == self.batch:
            return x[idx], y[idx], self.mask(self.batch)
        return self._pad(x[idx], y[idx], len(idx))

    def mask(self, real: int) -> np.ndarray:
        """The sample mask of a batch whose first ``real`` rows are samples, in the graph input's dtype."""
        mask = np.zeros(self.batch, self.mask_dtype)
        mask[:real] = 1
        return mask

    def _pad(self, x: np.ndarray, y: np.ndarray, rest: int) -> tuple:
        pad = self.batch - rest
        xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        yp = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
        return xp, yp, self.mask(rest)

    def feeds(self, x: np.ndarray, y: np.ndarray | None, mask: np.ndarray, lr: float | None) -> dict[str, np.ndarray]:
        f = {self.meta["model_inputs"][0]: x, "sample_mask": mask}
        if y is not None:
            f[self.meta["target_input"]] = y
        if lr is not None:
            f[self.meta["lr_input"]] = np.asarray(lr, np.float32)
        return f

    # ----- one step ------------------------------------------------------
    def prepare(self) -> None:
        """Resolve (a native backend: build) the training step before the first one runs."""
        self.executor.prepare_step([self.meta["loss"], self.meta["logits"]])

    def train_step(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, lr: float, epoch: int = 0) -> StepRecord:
        meta = self.meta
        loss_name = meta["loss"]
        logits_name = meta["logits"]
        ctx = KernelContext(training=True, seed=self.seed, step=self.step, draws=self._draws)

        def guard(out: dict[str, np.ndarray]) -> None:
            loss = float(out[loss_name])
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss} at step {self.step + 1}; training stopped and the last good "
                    "model kept. Lower --lr"
                )

        out = self.executor.train_step(self.feeds(x, y, mask, lr), [loss_name, logits_name], ctx, guard,
                                       self.on_node)
        self.step += 1
        meta["step"] = self.step
        acc = _accuracy(out[logits_name], y, mask) if meta.get("loss_kind") == "cross-entropy" else None
        rec = StepRecord(self.step, epoch, float(out[loss_name]), acc, lr, dict(ctx.stats))
        if self._slots:  # the bits this step ran at (hooks such as the controller may change them)
            rec.stats["bits"] = {name: int(v.data) for name, v in self._slots}
        for hook in self.hooks:
            hook(self, rec)
        return rec

    def run_report(self) -> dict[str, Any]:
        """Extra summary fields contributed by hooks (controller changes, measured energy)."""
        report: dict[str, Any] = {}
        for hook in self.hooks:
            fn = getattr(hook, "report", None)
            if fn is not None:
                report.update(fn())
        return report

    # ----- inference -----------------------------------------------------
    def forward(self, x: np.ndarray, outputs: list[str], y: np.ndarray | None = None) -> Iterator[tuple]:
        """Batched inference-mode forward; yields (outputs dict, number of real samples)."""
        n = len(x)
        for start in range(0, n, self.batch):
            xb = x[start:start + self.batch]
            real = len(xb)
            yb = y[start:start + self.batch] if y is not None else None
            if real < self.batch:
                pad = self.batch - real
                xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
                if yb is not None:
                    yb = np.concatenate([yb, np.zeros((pad, *yb.shape[1:]), yb.dtype)])
            out = self.executor.run(self.feeds(xb, yb, self.mask(real), None), outputs, KernelContext(training=False))
            yield {k: v[:real] if v.ndim and v.shape[0] == self.batch else v for k, v in out.items()}, real

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        names = list(self.meta["model_outputs"])
        parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
        for out, _ in self.forward(x, names):
            for k in names:
                parts[k].append(out[k])
        # a 0-d output (no batch axis) comes from one batch: nothing to concatenate
        return {k: np.concatenate(v) if v[0].ndim else np.array(v[0]) for k, v in parts.items()}

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        loss_name, logits_name = self.meta["loss"], self.meta["logits"]
        total, n_all, correct = 0.0, 0, 0
        for i, (out, real) in enumerate(self.forward(x, [loss_name, logits_name], y)):
            total += float(out[loss_name]) * real
            n_all += real
            if self.meta.get("loss_kind") == "cross-entropy":
                yb = y[i * self.batch:i * self.batch + real]
                correct += int(np.sum(np.argmax(out[logits_name], axis=-1) == yb))
        if n_all == 0:
            raise DataError("no samples to evaluate")
        res = {"loss": total / n_all, "samples": n_all}
        if self.meta.get("loss_kind") == "cross-entropy":
            res["accuracy"] = correct / n_all
        else:
            res["mse"] = res["loss"]
        return res


def _accuracy(logits: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float | None:
    """Fraction of the real samples (mask > 0) whose arg-max logit is the label; None without any."""
    if len(mask) and np.minimum.reduce(mask, axis=None) > 0:  # no padded rows (NaN takes the general path)
        hits = logits.argmax(axis=-1) == y
        return np.count_nonzero(hits) / hits.size  # np.mean of the hits, exactly (a correctly rounded quotient)
    m = mask > 0
    return float(np.mean(np.argmax(logits[m], axis=-1) == y[m])) if m.any() else None


def epoch_batches(n: int, batch: int, keep_last: bool) -> int:
    """Steps per epoch: full batches, plus a padded last one with ``keep_last``."""
    return n // batch + (1 if keep_last and n % batch else 0)


def run_length(n: int, batch: int, epochs: int | None, steps: int | None, keep_last: bool) -> int:
    """Steps a run of ``epochs`` (default 1) or ``steps`` takes over ``n`` samples."""
    return steps if steps is not None else (epochs or 1) * epoch_batches(n, batch, keep_last)


@dataclass
class RunState:
    """Where a training run is, so it can stop after any step and resume bit-identically.

    ``order`` is the current epoch's sample order (drawn at the epoch's first step; None
    before it), ``pos`` the batches of that epoch already done, ``done`` the steps this run
    has taken toward its target, ``start_step`` the trainer step the run started at (the
    learning-rate schedule spans ``start_step .. start_step + target``).
    """

    epoch: int = 0
    pos: int = 0
    done: int = 0
    start_step: int = 0
    order: np.ndarray | None = None
    stopped: bool = False


def run_training(
    trainer: Trainer,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int | None,
    steps: int | None,
    schedule: LRSchedule,
    shuffle: bool = True,
    keep_last: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
    state: RunState | None = None,
    after_step: Callable[[RunState], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train for ``epochs`` or ``steps``; returns the summary (steps, seconds, ms/step, final loss).

    ``state`` continues a run (from a checkpoint); ``after_step`` sees the run state after
    every step (checkpointing); ``should_stop`` is asked after every step (Ctrl-C) and ends
    the run early with ``state.stopped`` set.
    """
    per_epoch = epoch_batches(len(x), trainer.batch, keep_last)
    if per_epoch == 0:
        raise DataError(f"{len(x)} samples are fewer than the compiled batch size {trainer.batch}; use --keep-last")
    target = run_length(len(x), trainer.batch, epochs, steps, keep_last)
    st = state if state is not None else RunState(epoch=trainer.step // per_epoch, start_step=trainer.step)
    if st.done < target:
        trainer.prepare()  # a native backend builds its code here, outside the timed steps
    t0, last, done0 = time.perf_counter(), None, st.done
    while st.done < target:
        if st.order is None:
            st.order = trainer.epoch_order(len(x), shuffle)
        xb, yb, mb = trainer.batch_at(x, y, st.order, st.pos)
        last = trainer.train_step(xb, yb, mb, schedule(trainer.step), st.epoch)
        st.done += 1
        st.pos += 1
        if st.pos >= per_epoch:
            st.epoch, st.pos, st.order = st.epoch + 1, 0, None
        if on_step is not None:
            on_step(last)
        if after_step is not None:
            after_step(st)
        if should_stop is not None and st.done < target and should_stop():
            st.stopped = True
            break
    seconds = time.perf_counter() - t0
    return {
        "steps": st.done,
        "seconds": seconds,
        "ms_per_step": 1e3 * seconds / max(st.done - done0, 1),
        "final_loss": last.loss if last else None,
        "final_accuracy": last.accuracy if last else None,
        "stopped": st.stopped,
    }

"""The Python API (the CLI is a thin layer over it).

    import rctc
    m = rctc.compile("lenet.onnx", mode="rct", batch_size=32)
    m.train(x, y, epochs=5, lr=0.05)
    m.evaluate(x_test, y_test)      # {"loss": ..., "accuracy": ...}
    m.predict(x_test)               # {"logits": array}
    m.estimate()                    # static energy / memory report
    m.export("lenet_trained.onnx", format="float")
    m.save("lenet.rct"); rctc.load("lenet.rct")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from rctc.data import check_labels, fit_inputs
from rctc.errors import RctcError
from rctc.ir import Graph
from rctc.options import CompileOptions
from rctc.rct_format import load_rct, save_rct
from rctc.runtime.trainer import LRSchedule, RunState, StepRecord, Trainer, run_length, run_training


class CompiledModel:
    """A compiled training graph plus its state; train / evaluate / predict / export it."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._trainer: Trainer | None = None
        self._seed: int | None = None
        self._backend = "numpy"
        self._threads: int | None = None

    # ----- properties ----------------------------------------------------
    @property
    def mode(self) -> str:
        return str(self.graph.meta["mode"])

    @property
    def options(self) -> CompileOptions:
        return CompileOptions.from_dict(self.graph.meta["options"])

    @property
    def input_name(self) -> str:
        return str(self.graph.meta["model_inputs"][0])

    @property
    def batch_size(self) -> int:
        return int(self.graph.value(self.input_name).shape[0])

    @property
    def backend(self) -> str:
        """What runs train / evaluate / predict: ``"numpy"`` (the default here) or ``"native"``."""
        return self._backend

    def use_backend(self, backend: str | None = None, threads: int | None = None) -> str | None:
        """Run on ``backend`` (``"native"``, ``"numpy"``, or None: native when a C compiler is
        found and the graph is rct); ``threads`` for the native kernels (default: the CPUs this
        process may use). Returns the one line to tell the user when numpy runs instead, else None."""
        from rctc.native.backend import choose

        choice = choose(backend, self.graph)
        if choice.name != self._backend or threads != self._threads:
            self._backend, self._threads, self._trainer = choice.name, threads, None
        return choice.note

    def trainer(self, seed: int | None = None) -> Trainer:
        seed = self.options.seed if seed is None else seed
        if self._trainer is None or seed != self._seed:
            executor = None
            if self._backend != "numpy":
                if self._trainer is not None:  # only the seed changed: keep the built and loaded C step
                    executor = self._trainer.executor
                else:
                    from rctc.native.backend import make_executor

                    executor = make_executor(self._backend, self.graph, self._threads)
            self._trainer = Trainer(self.graph, seed, executor)
            self._seed = seed
            from rctc.runtime.controller import attach_controller

            attach_controller(self._trainer)
        return self._trainer

    # ----- data ----------------------------------------------------------
    def _x(self, x: np.ndarray, source: str) -> np.ndarray:
        v = self.graph.value(self.input_name)
        return fit_inputs(x, tuple(v.shape[1:]), v.dtype, source)

    def _y(self, y: np.ndarray | None, n: int, source: str) -> np.ndarray:
        meta = self.graph.meta
        if meta.get("loss_kind") == "cross-entropy":
            return check_labels(y, n, int(meta["num_classes"]), None, source)
        out = self.graph.value(meta["model_outputs"][0])
        return check_labels(y, n, None, tuple(out.shape[1:]), source)

    # ----- jobs ----------------------------------------------------------
    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int | None = None,
        steps: int | None = None,
        lr: float | None = None,
        seed: int | None = None,
        shuffle: bool = True,
        keep_last: bool = False,
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
        on_step: Callable[[StepRecord], None] | None = None,
        source: str = "data",
        state: RunState | None = None,
        after_step: Callable[[RunState], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Train in place; returns the summary (steps, seconds, ms_per_step, final_loss, ...).

        ``state`` / ``after_step`` / ``should_stop`` resume, checkpoint and interrupt a run
        (see ``rctc.checkpoint`` and ``rctc.runtime.trainer.run_training``).
        """
        xs = self._x(x, source)
        logits = self.graph.value(self.graph.meta["logits"])
        if not self._per_sample(logits):
            raise RctcError(
                f"output {logits.name!r} has shape {list(logits.shape)}, no batch (first) dimension, so there is "
                "no per-sample target to train it on; train a model whose output is [batch, ...]"
            )
        ys = self._y(y, len(xs), source)
        if epochs is not None and epochs < 1:
            raise RctcError(f"--epochs must be >= 1, got {epochs}")
        if steps is not None and steps < 1:
            raise RctcError(f"--steps must be >= 1, got {steps}")
        if lr is not None and not lr > 0:
            raise RctcError(f"--lr must be > 0, got {lr}")
        if lr_schedule not in ("constant", "step", "cosine"):
            raise RctcError(f"--lr-schedule must be constant, step or cosine, got {lr_schedule!r}")
        t = self.trainer(seed)
        total = run_length(len(xs), t.batch, epochs, steps, keep_last)
        start = state.start_step if state is not None else t.step
        sched = LRSchedule(lr or self.options.lr, lr_schedule, total, warmup_steps, start=start)
        summary = run_training(t, xs, ys, epochs, steps, sched, shuffle, keep_last, on_step, state, after_step,
                               should_stop)
        summary.update(t.run_report())
        return summary

    def evaluate(self, x: np.ndarray, y: np.ndarray, source: str = "data") -> dict[str, float]:
        xs = self._x(x, source)
        return self.trainer().evaluate(xs, self._y(y, len(xs), source))

    def predict(self, x: np.ndarray, source: str = "data") -> dict[str, np.ndarray]:
        """Outputs by name. An output with no batch dimension (a 0-d reduction over the whole
        batch, say) is only defined for exactly one full batch, so it needs ``batch_size`` samples."""
        xs = self._x(x, source)
        whole = [o for o in self.graph.meta["model_outputs"] if not self._per_sample(self.graph.value(o))]
        if whole and len(xs) != self.batch_size:
            raise RctcError(
                f"{source}: output {whole[0]!r} has no batch dimension (shape "
                f"{list(self.graph.value(whole[0]).shape)}): it is one value per batch of {self.batch_size}; "
                f"predict exactly {self.batch_size} samples (got {len(xs)})"
            )
        return self.trainer().predict(xs)

    def _per_sample(self, v: Any) -> bool:
        """Whether value ``v`` has the batch as its first dimension."""
        return bool(v.shape) and int(v.shape[0]) == self.batch_size

    def estimate(self, profile: str | None = None) -> dict[str, Any]:
        from rctc.compiler import estimate

        return estimate(self.graph, profile)

    def export(self, path: str | os.PathLike[str], format: str = "float") -> None:
        from rctc.export import export_model

        export_model(self.graph, path, format)

    def digest(self) -> str:
        """CRC-32 of the training state (rctc/digest.py defines it): the same on every backend."""
        from rctc.digest import graph_state_records, state_digest

        return state_digest(graph_state_records(self.graph))

    def save(self, path: str | os.PathLike[str]) -> None:
        save_rct(self.graph, path)


def compile(  # noqa: A001 - the natural name for the API
    model: onnx.ModelProto | str | os.PathLike[str], **options: Any
) -> CompiledModel:
    """Compile an ONNX model (path or ModelProto); keyword options as in ``CompileOptions``."""
    from rctc.compiler import compile_graph

    g, _ = compile_graph(model, CompileOptions(**options))
    return CompiledModel(g)


def load(path: str | os.PathLike[str]) -> CompiledModel:
    return CompiledModel(load_rct(path))

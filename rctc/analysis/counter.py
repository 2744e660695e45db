"""Measured counters: what the runtime really executed in each training step, and its energy.

``attach_counter(trainer, profile)`` installs an ``EnergyCounter`` as the trainer's
``on_node`` callback and as a step hook. For every node the executor runs, the counter
calls the same cost functions as the static prediction (``CostModel.measured_cost``) on
the shapes and dtypes of the arrays the kernel really received and returned, at the widths
in force at that moment (a parameter's current ``<param>.bits``, which the bitwidth
controller may change between steps). It also measures the bytes the executor's value
environment holds (distinct array buffers, views counted once), its maximum over a step,
to check the buffer plan against. ``report()`` gives ``measured``: counts per step
(averaged over the steps counted) in the form of ``predicted.counts``, energy per step
and in total.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from rctc.analysis.counts import Counts
from rctc.analysis.model import CostModel
from rctc.analysis.profiles import Profile, load_profile
from rctc.ir import Node

if TYPE_CHECKING:  # the runtime calls the counter back; the analysis never imports the runtime
    from rctc.runtime.trainer import StepRecord, Trainer


def live_bytes(env: Mapping[str, Any]) -> int:
    """Bytes held by the arrays of ``env``: each underlying buffer once (views share their base)."""
    seen: dict[int, int] = {}
    for arr in env.values():
        if not isinstance(arr, np.ndarray):
            continue
        base = arr
        while isinstance(base.base, np.ndarray):
            base = base.base
        seen[id(base)] = base.nbytes
    return sum(seen.values())


class EnergyCounter:
    """Counts executed nodes of training steps (an ``on_node`` callback plus a step hook).

    ``live_steps``: in how many of the first steps to measure the live bytes (walking the
    environment after every node costs time; the schedule is the same in every step).
    """

    def __init__(self, trainer: Trainer, profile: str | Profile | None = None, live_steps: int = 1) -> None:
        self.profile = load_profile(profile)
        self.model = CostModel(trainer.graph, self.profile, arena=False)  # counts never read the arena
        self.total = Counts()
        self.current = Counts()
        self.steps = 0
        self.live_steps = live_steps
        self.live_peak = 0

    def on_node(self, node: Node, args: list, result: Any, env: Mapping[str, Any]) -> None:
        self.model.measured_cost(node, args, result, self.current)
        if self.steps < self.live_steps:
            self.live_peak = max(self.live_peak, live_bytes(env))

    def __call__(self, trainer: Trainer, rec: StepRecord) -> None:
        """Step hook: the step finished (and its state was written back); commit its counts."""
        rec.stats["measured_energy_pj"] = self.current.energy(self.profile)["total"]
        self.total.merge(self.current)
        self.current = Counts()
        self.steps += 1

    def per_step(self) -> Counts:
        return self.total.scaled(self.steps) if self.steps else Counts()

    def report(self) -> dict[str, Any]:
        per_step = self.per_step()
        energy = per_step.energy(self.profile)
        return {"measured": {
            "profile": self.profile.name,
            "steps": self.steps,
            "energy_pj_per_step": energy["total"],
            "energy_pj_total": self.total.energy(self.profile)["total"],
            "energy_pj": energy,
            "counts": per_step.to_dict(),
            "live_bytes_peak": self.live_peak,
            "planned_peak_bytes": self.model.plan["peak_bytes"],
        }}


def attach_counter(trainer: Trainer, profile: str | Profile | None = None, live_steps: int = 1) -> EnergyCounter:
    """Install (or return the already installed) energy counter of ``trainer``."""
    for hook in trainer.hooks:
        if isinstance(hook, EnergyCounter):
            return hook
    counter = EnergyCounter(trainer, profile, live_steps)
    trainer.on_node = counter.on_node
    trainer.hooks.insert(0, counter)  # before the controller changes any bits
    return counter


__all__ = ["EnergyCounter", "attach_counter", "live_bytes"]

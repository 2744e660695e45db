"""The pass registry (name -> pass) and the pipelines per mode; the CLI reads both."""

from __future__ import annotations

from rctc.pass_manager import Pass
from rctc.passes import (
    add_loss,
    add_optimizer,
    assign_slots,
    build_backward,
    canonicalize,
    fuse_updates,
    insert_fake_quant,
    insert_quant,
    mark_trainable,
    plan_memory,
    requantise,
    sum_accumulators,
)

PASSES: dict[str, Pass] = {
    "canonicalize": canonicalize.run,
    "mark_trainable": mark_trainable.run,
    "add_loss": add_loss.run,
    "build_backward": build_backward.run,
    "add_optimizer": add_optimizer.run,
    "insert_fake_quant": insert_fake_quant.run,
    "assign_slots": assign_slots.run,
    "insert_quant": insert_quant.run,
    "requantise": requantise.run,
    "sum_accumulators": sum_accumulators.run,
    "fuse_updates": fuse_updates.run,
    "plan_memory": plan_memory.run,
}

_TRAINING = ["canonicalize", "mark_trainable", "add_loss", "build_backward", "add_optimizer"]

PIPELINES: dict[str, list[str]] = {
    "fp32": _TRAINING + ["plan_memory"],
    "qat": ["canonicalize", "mark_trainable", "insert_fake_quant", "add_loss", "build_backward", "add_optimizer",
            "plan_memory"],
    # parameters get their integer slots first, so insert_quant can read them directly
    "rct": _TRAINING + ["assign_slots", "insert_quant", "requantise", "sum_accumulators", "fuse_updates",
                    "plan_memory"],
}

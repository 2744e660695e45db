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
    "fuse_updates": fuse_updates.run,
}

_TRAINING = ["canonicalize", "mark_trainable", "add_loss", "build_backward", "add_optimizer"]

PIPELINES: dict[str, list[str]] = {
    "fp32": list(_TRAINING),
    "qat": ["canonicalize", "mark_trainable", "insert_fake_quant", "add_loss", "build_backward", "add_optimizer"],
    # parameters get their integer slots first, so insert_quant can read them directly
    "rct": _TRAINING + ["assign_slots", "insert_quant", "fuse_updates"],
}

"""The pass registry (name -> pass) and the pipelines per mode; the CLI reads both."""

from __future__ import annotations

from rctc.pass_manager import Pass
from rctc.passes import add_loss, add_optimizer, build_backward, canonicalize, mark_trainable

PASSES: dict[str, Pass] = {
    "canonicalize": canonicalize.run,
    "mark_trainable": mark_trainable.run,
    "add_loss": add_loss.run,
    "build_backward": build_backward.run,
    "add_optimizer": add_optimizer.run,
}

_TRAINING = ["canonicalize", "mark_trainable", "add_loss", "build_backward", "add_optimizer"]

PIPELINES: dict[str, list[str]] = {
    "fp32": list(_TRAINING),
    "qat": list(_TRAINING),
    "rct": list(_TRAINING),
}

"""The figures ``rctc codegen --json`` reports, from a built image and (optionally) a run.

Needs: an :class:`~rctc.native.device.image.ImageReport`, the memory plan's predicted peak, and
a :class:`~rctc.native.device.run.RunResult` when the image ran. Leaves: a plain dict with the
issue's keys; a value not measured is None (never a number copied from elsewhere).
"""

from __future__ import annotations

from typing import Any

from rctc.native.device.image import ImageReport
from rctc.native.device.run import RunResult


def codegen_summary(image: ImageReport, plan_peak_bytes: int | None, result: RunResult | None = None) -> dict[str, Any]:
    """``flash_bytes, ram_bytes, arena_bytes, plan_peak_bytes, digest, instructions_per_step``,
    plus ``arena_matches_plan`` (the linked arena against the plan's peak) and ``float_helpers``."""
    per_step = result.instructions_per_step if result is not None else None
    return {
        "flash_bytes": image.flash_bytes,
        "ram_bytes": image.ram_bytes,
        "arena_bytes": image.arena_bytes,
        "plan_peak_bytes": plan_peak_bytes,
        "arena_matches_plan": (
            None if image.arena_bytes is None or plan_peak_bytes is None else image.arena_bytes == plan_peak_bytes
        ),
        "digest": result.digest_hex if result is not None else None,
        "instructions_per_step": per_step,
        "instructions_counted_by": "qemu -icount (emulated instructions, not time)" if per_step is not None else None,
        "float_helpers": list(image.float_helpers),
    }

"""The kernel table: op type -> numpy implementation (the reference backend's half of an op).

Every kernel is for an op type defined in ``rctc.ops``; registering one for an undefined op
type, or twice, raises.

A kernel is ``fn(ctx, node, *inputs) -> array | tuple[array, ...]``: ``node`` gives the
attributes (``node.attrs``) and output shapes, ``inputs`` are numpy arrays (``None`` for an
omitted optional input), the result has one array per node output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rctc.ops import lookup

Kernel = Callable[..., Any]

KERNELS: dict[str, Kernel] = {}


def register(*op_types: str) -> Callable[[Kernel], Kernel]:
    """Register ``fn`` for each op type; registering an op type twice is an error."""

    def deco(fn: Kernel) -> Kernel:
        for op in op_types:
            if lookup(op) is None:
                raise RuntimeError(f"kernel for {op!r}, which has no op definition (add one in rctc/ops/)")
            if op in KERNELS:
                raise RuntimeError(f"kernel for {op!r} registered twice ({KERNELS[op].__module__} and {fn.__module__})")
            KERNELS[op] = fn
        return fn

    return deco


@dataclass
class KernelContext:
    """Per-run state kernels may read: training flag, seeded generator, counters."""

    training: bool = False
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    step: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

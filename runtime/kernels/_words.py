"""The uint32 random words the integer kernels' stochastic roundings consume (one helper, so the
switch to rctc's counter-based generator is one line here).

Needs: a kernel context (its seeded generator). Leaves: ``rand_words(ctx, node, shape)``, uint32
words of ``shape``, deterministic for a given generator state; ``None`` when the node rounds to
nearest (``rounding`` attribute), which the intref algorithms read as "nearest".
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext


def rand_words(ctx: KernelContext, node: Node, shape: tuple[int, ...]) -> np.ndarray | None:
    """uint32 words for a stochastic rounding of ``shape`` elements, or None for nearest rounding."""
    if node.attrs.get("rounding", "stochastic") == "nearest":
        return None
    n = math.prod(shape)
    return ctx.rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n].reshape(shape)

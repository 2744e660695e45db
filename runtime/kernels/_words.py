"""The uint32 random words the integer kernels' stochastic roundings consume.

Needs: a kernel context (``KernelContext.words``: the counter-based Philox stream of
(seed, step, node id)). Leaves: ``rand_words(ctx, node, shape)``, uint32 words of ``shape``, word
``i`` for element ``i`` (C order) of the node's first draw; ``None`` when the node rounds to
nearest (``rounding`` attribute), which the intref algorithms read as "nearest".
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext


def rand_words(ctx: KernelContext, node: Node, shape: tuple[int, ...]) -> np.ndarray | None:
    """uint32 words for a stochastic rounding of ``shape`` elements, or None for nearest rounding."""
    if node.attrs.get("rounding", "stochastic") == "nearest":
        return None
    return ctx.words(node, tuple(shape))

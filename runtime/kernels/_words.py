"""The uint32 random words the integer kernels' stochastic roundings consume.

Needs: a kernel context (``KernelContext.words``: the counter-based Philox stream of
(seed, step, node id)). Leaves: ``rand_words(ctx, node, shape)``, uint32 words of ``shape``, word
``i`` for element ``i`` (C order) of the node's first draw; ``None`` when the node rounds to
nearest (``rounding`` attribute), which the intref algorithms read as "nearest"; ``lazy_words``,
the same words drawn only if :func:`rctc.runtime.intref.core.requantize` needs them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext


def rand_words(ctx: KernelContext, node: Node, shape: tuple[int, ...]) -> np.ndarray | None:
    """uint32 words for a stochastic rounding of ``shape`` elements, or None for nearest rounding."""
    if node.attrs.get("rounding", "stochastic") == "nearest":
        return None
    return ctx.words(node, tuple(shape))


def lazy_words(ctx: KernelContext, node: Node, shape: tuple[int, ...]) -> Callable[[], np.ndarray] | None:
    """:func:`rand_words` as a callable for ``requantize``, which draws only when its shift is not 0
    (a rounding of nothing needs no words; the stream is counter-based, so skipping a draw changes
    no other word); None for nearest rounding."""
    if node.attrs.get("rounding", "stochastic") == "nearest":
        return None
    dims = tuple(shape)
    return lambda: ctx.words(node, dims)

"""The kernel table: op type -> numpy implementation (the reference backend's half of an op).

Every kernel is for an op type defined in ``rctc.ops``; registering one for an undefined op
type, or twice, raises.

A kernel is ``fn(ctx, node, *inputs) -> array | tuple[array, ...]``: ``node`` gives the
attributes (``node.attrs``) and output shapes, ``inputs`` are numpy arrays (``None`` for an
omitted optional input), the result has one array per node output.

A kernel with the needs-rng trait takes every random bit from :meth:`KernelContext.words`: the
words of its node's counter-based stream (``rctc.rng``, keyed by the run's seed, the training
step and the node's id; docs/rng.md). Nothing in a training step draws from numpy's generators.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rctc.ir import Node
from rctc.node_ids import node_id
from rctc.ops import lookup
from rctc.ops.schema import NEEDS_RNG
from rctc.rng import random_words, random_words_many

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


#: words per draw of a node: draw ``d`` of a node is words ``[d * 2^40, (d + 1) * 2^40)`` of its stream
DRAW_STRIDE = 1 << 40


class DrawPlan:
    """Batches a training run's small random draws: the requests (node id, first word, count) one
    run made through :meth:`KernelContext.words` become the next run's plan, drawn all at once
    (``rctc.rng.random_words_many``, one pass instead of one numpy pass per node) when that run
    asks for its first words. A request the plan has is served from it, any other is drawn
    directly: the words are the same either way (they depend only on seed, step, node and
    position), so a plan never changes a result, only the number of numpy calls. Draws of more
    than :data:`SMALL` words are always drawn directly (batching gains nothing there and would
    hold them in memory for the whole step). One plan per trainer; a run is one
    :class:`KernelContext`."""

    SMALL = 1 << 16

    def __init__(self) -> None:
        self._plan: list[tuple[int, int, int]] = []
        self._seen: list[tuple[int, int, int]] = []
        self._ready: dict[tuple[int, int, int], np.ndarray] = {}
        self._owner: Any = None

    def take(self, ctx: KernelContext, key: tuple[int, int, int]) -> np.ndarray | None:
        """The prefetched words of ``key`` in ``ctx``'s run, or None (draw them directly)."""
        if self._owner is None or self._owner() is not ctx:  # a new run: the last one's requests are its plan
            if self._owner is not None:
                self._plan = list(dict.fromkeys(self._seen))
            self._owner, self._seen = weakref.ref(ctx), []
            self._ready = dict(zip(self._plan, random_words_many(ctx.seed, ctx.step, self._plan))) if self._plan else {}
        if key[2] > self.SMALL:
            return None
        self._seen.append(key)
        return self._ready.pop(key, None)


@dataclass
class KernelContext:
    """Per-run state kernels may read: training flag, the random stream's key, counters.

    ``seed`` (64-bit) and ``step`` (32-bit, the trainer step being run) with each node's id key
    the node's random stream; :meth:`words` is the one way a kernel gets random bits.
    """

    training: bool = False
    seed: int = 0
    step: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    #: values kernels of one run hand on to later kernels of the same run (a BatchNorm's statistics
    #: for its backward): written and read through :meth:`hand_on` / :meth:`take_over`
    scratch: dict[Any, Any] = field(default_factory=dict)
    #: a trainer's :class:`DrawPlan` (None: every draw on its own)
    draws: DrawPlan | None = None

    def hand_on(self, kind: str, q: np.ndarray, key: tuple, value: Any) -> None:
        """Keep ``value`` (what a kernel computed from the array ``q`` with parameters ``key``) for
        a later kernel of this run that reads the very same array with the same parameters."""
        self.scratch[(kind, id(q))] = (q, key, value)  # q is held, so its id stays unique

    def take_over(self, kind: str, q: np.ndarray, key: tuple) -> Any:
        """The value :meth:`hand_on` kept for this very ``q`` and ``key`` (removed), else None."""
        kept = self.scratch.pop((kind, id(q)), None)
        return kept[2] if kept is not None and kept[0] is q and kept[1] == key else None

    def words(self, node: Node, shape: int | tuple[int, ...], *, start: int = 0, draw: int = 0) -> np.ndarray:
        """uint32 random words for ``node``, one per element of ``shape`` (an int is a length).

        Element ``i`` (C order) of the result is word ``draw * DRAW_STRIDE + start + i`` of the
        stream of ``(seed, step, node_id(node))``: the same value however a kernel splits its
        elements into blocks (``start`` is the first element of a block) or orders them. A
        kernel that needs two independent draws of one step (e.g. velocity and update of a
        momentum update) numbers them ``draw = 0, 1, ...``; a draw holds at most 2^40 elements.
        Only ops whose definition has the needs-rng trait may draw (the code generator and the
        analyses read the trait to know which nodes take words).
        """
        op = lookup(node.op_type)
        if op is None or not op.has(NEEDS_RNG):
            raise RuntimeError(f"node {node.name!r} ({node.op_type}) draws random words, but its op definition "
                               "lacks the needs-rng trait (add it in rctc/ops/)")
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        count = math.prod(dims)
        if not 0 <= draw < 1 << 24 or start < 0 or start + count > DRAW_STRIDE:
            raise ValueError(f"words: draw {draw} / elements [{start}, {start + count}) outside a node's stream "
                             "(draws 0..2^24-1 of 2^40 words each)")
        key = (node_id(node), draw * DRAW_STRIDE + start, count)
        w = self.draws.take(self, key) if self.draws is not None else None
        if w is None:
            w = random_words(self.seed, self.step, *key)
        return w.reshape(dims)

"""Split a step's schedule into C segments and host segments (the native backend's plan).

Needs: a compiled graph and the nodes of one schedule in a valid order (``Executor.nodes_for``).
Leaves: :func:`partition`: the same nodes in a possibly different valid order, cut into maximal
runs of one kind: ``"c"`` (every node has a C emitter that accepts it, see
:func:`rctc.native.codegen.refusal`) or ``"host"`` (the numpy kernels). The reorder is a list
schedule that keeps running nodes of the current kind while any is ready (ties: the original
order), so independent host nodes (a bias update between two C products) do not cut a C run.
Reordering is safe: a kernel's result depends only on its inputs and on its node's random stream
(keyed by the node id, not its position); the only order-visible effect, the insertion order of
``ctx.stats``, the executor restores.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from rctc.ir import Node
from rctc.native.codegen import refusal

#: op types whose numpy kernel records the bitwidth controller's statistics in ``ctx.stats``:
#: they run on the host in a training step until the C step returns the same statistics
STATS_OPS = frozenset({"IntSGDUpdate", "IntMomentumUpdate", "FusedIntUpdate", "FusedIntMomentumUpdate",
                       "IntAccSGDUpdate", "IntAccMomentumUpdate", "IntAdamWUpdate", "IntAccAdamWUpdate",
                       "FusedIntAdamWUpdate"})
#: op types whose numpy kernel reads ``ctx.training``: an inference program keeps them on the host
#: unless their emitter reads ``cx.training`` (listed in TRAINING_AWARE)
READS_TRAINING = frozenset({"IntBatchNormalization", "BatchNormalization", "BatchNormGrad", "Dropout",
                            "DropoutGrad", "QuantAct"})
TRAINING_AWARE: frozenset[str] = frozenset()


@dataclass
class Segment:
    """A maximal run of nodes of one kind (``"c"`` or ``"host"``), in execution order."""

    kind: str
    nodes: list[Node]


def host_reason(node: Node, training: bool, stats_in_c: frozenset[str] = frozenset()) -> str | None:
    """Why ``node`` runs on the host (None: it runs in C)."""
    if training and node.op_type in STATS_OPS and node.op_type not in stats_in_c:
        return f"{node.op_type} records the controller statistics, which the C step does not return yet"
    if not training and node.op_type in READS_TRAINING and node.op_type not in TRAINING_AWARE:
        return f"{node.op_type} behaves differently in inference and its emitter has no inference form"
    return refusal(node, training)


def _reorder(nodes: Sequence[Node], in_c: Sequence[bool]) -> list[int]:
    """Indices of ``nodes`` in a valid order that runs the current kind while any of it is ready."""
    producer = {o.name: i for i, n in enumerate(nodes) for o in n.outputs}
    preds = [{producer[v.name] for v in n.inputs if v is not None and v.name in producer} for n in nodes]
    succs: list[list[int]] = [[] for _ in nodes]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].append(i)
    waiting = [len(ps) for ps in preds]
    ready: dict[bool, list[int]] = {True: [], False: []}
    for i, w in enumerate(waiting):
        if w == 0:
            heapq.heappush(ready[in_c[i]], i)
    order: list[int] = []
    cur = bool(in_c[0]) if len(nodes) else True
    while ready[True] or ready[False]:
        if not ready[cur]:
            cur = not cur
        i = heapq.heappop(ready[cur])
        order.append(i)
        for s in succs[i]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready[in_c[s]], s)
    return order


def partition(nodes: Sequence[Node], training: bool = True,
              stats_in_c: frozenset[str] = frozenset()) -> list[Segment]:
    """``nodes`` reordered and cut into C and host segments (see the module docstring)."""
    in_c = [host_reason(n, training, stats_in_c) is None for n in nodes]
    segments: list[Segment] = []
    for i in _reorder(nodes, in_c):
        kind = "c" if in_c[i] else "host"
        if not segments or segments[-1].kind != kind:
            segments.append(Segment(kind, []))
        segments[-1].nodes.append(nodes[i])
    return segments

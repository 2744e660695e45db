"""The cost model of one graph under one profile: placement, operands, per-node costs.

``CostModel`` binds a graph to a profile once: it classifies the values (``ValueInfo``),
computes the buffer plan, places each class of data (parameters, optimizer state,
activations) in a memory level, and turns a node's operands into ``Operand``s for the
cost functions (``rctc.analysis.costs.node_cost``). ``static_cost`` uses the graph's
shapes and dtypes; ``measured_cost`` the arrays a kernel really received and returned.
Both go through ``_cost``, so prediction and measurement cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rctc.analysis.costs import Operand, node_cost
from rctc.analysis.counts import Counts
from rctc.analysis.memory import compute_plan
from rctc.analysis.profiles import PLACEMENT_CLASSES, Profile
from rctc.analysis.values import ValueInfo, step_nodes
from rctc.ir import Graph, Node, Value

CLASS_OF_KIND = {"param": "parameters", "optimizer": "optimizer", "grad": "activations", "activation": "activations",
                 "epilogue": "activations"}


def place(plan: dict[str, Any], profile: Profile) -> dict[str, str]:
    """Memory level of each data class: the profile's choice, or the first level with room (auto)."""
    params = int(plan["parameters"]["bytes_at_max_bits"])
    optimizer = int(plan["optimizer_bytes"])
    rest = int(plan["peak_bytes"]) - int(plan["parameters"]["slot_bytes"]) - optimizer
    sizes = {"parameters": params, "optimizer": optimizer, "activations": max(rest, 0)}
    room = {lv.name: lv.capacity_bytes for lv in profile.levels}
    out: dict[str, str] = {}
    for cls in PLACEMENT_CLASSES:
        choice = profile.placement.get(cls, "auto")
        if choice == "auto":
            choice = next((lv.name for lv in profile.levels if room[lv.name] >= sizes[cls]), profile.levels[-1].name)
        room[choice] -= sizes[cls]
        out[cls] = choice
    return out


class CostModel:
    """Costs of the nodes of one training step of ``graph`` under ``profile``."""

    def __init__(self, graph: Graph, profile: Profile, arena: bool = True) -> None:
        """``arena=False``: the plan without the device arena's layout (``compute_plan``)."""
        self.graph = graph
        self.profile = profile
        self.info = ValueInfo(graph)
        self.nodes = step_nodes(graph)
        self.plan = compute_plan(graph, self.info, self.nodes, arena=arena)
        self._operands: dict[tuple, Operand] = {}
        self.placement = place(self.plan, profile)
        self._level = {kind: self.placement[cls] for kind, cls in CLASS_OF_KIND.items()}

    def operand(self, v: Value, shape: Sequence[int], dtype: Any) -> Operand:
        bits = self.info.bits(v, dtype)
        key = (v.name, tuple(shape), np.dtype(dtype).char, bits)
        op = self._operands.get(key)
        if op is None:
            kind = self.info.kind.get(v.name, "activation")
            op = Operand.make(tuple(int(d) for d in shape), bits, self.info.is_float(v, dtype), kind,
                              self._level[kind])
            self._operands[key] = op
        return op

    def _cost(self, node: Node, ins: list[Operand | None], outs: list[Operand], counts: Counts) -> None:
        info = self.info

        def fq(i: int) -> int | None:
            v = node.input(i)
            return info.fake_quant_bits(v) if v is not None else None

        node_cost(node, ins, outs, counts, fq)

    def static_cost(self, node: Node, counts: Counts) -> None:
        ins = [self.operand(v, v.shape, v.dtype) if v is not None else None for v in node.inputs]
        outs = [self.operand(o, o.shape, o.dtype) for o in node.outputs]
        self._cost(node, ins, outs, counts)

    def measured_cost(self, node: Node, args: Sequence[np.ndarray | None], result: Any, counts: Counts) -> None:
        results = result if isinstance(result, tuple) else (result,)
        ins = [self.operand(v, np.shape(a), np.asarray(a).dtype) if v is not None and a is not None else None
               for v, a in zip(node.inputs, args)]
        outs = [self.operand(o, np.shape(r), np.asarray(r).dtype) for o, r in zip(node.outputs, results)]
        self._cost(node, ins, outs, counts)

    def predict(self) -> tuple[Counts, dict[str, Counts]]:
        """Counts of one training step: total and per layer."""
        total = Counts()
        layers: dict[str, Counts] = {}
        for n in self.nodes:
            c = layers.setdefault(self.info.layer_of(n), Counts())
            self.static_cost(n, c)
        for c in layers.values():
            total.merge(c)
        return total, layers


__all__ = ["CLASS_OF_KIND", "CostModel", "place"]

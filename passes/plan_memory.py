"""plan_memory: the liveness-based buffer plan of one training step -> peak memory.

Needs: a finished training graph of any mode (runs last in every pipeline).
Leaves: ``graph.meta["memory_plan"]``, a JSON-serialisable summary (parameter slots sized
for their max bits, optimizer state, buffers, inputs, the peak of the live transients and
what is live at the peak, peak total); see ``rctc.analysis.memory.compute_plan``. Nothing
else in the graph changes.
"""

from __future__ import annotations

from rctc.analysis.memory import compute_plan
from rctc.ir import Graph
from rctc.options import CompileOptions


def run(g: Graph, options: CompileOptions) -> None:
    g.meta["memory_plan"] = compute_plan(g)


__all__ = ["run"]

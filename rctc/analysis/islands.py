"""Float islands: the float32 ops left between the integer ops of an rct training step.

Needs: a graph (any mode) and the op definitions. Leaves: ``float_islands(g)``, one
``{"node", "op_type"}`` per node of the forward, loss or backward pass whose definition runs
it as a float island in rct mode (dequantise -> float32 -> quantise), excluding the quantise /
dequantise / layout plumbing, the updates and ops whose outputs are integers; an empty list
for an integer-from-end-to-end graph and for fp32 / qat graphs (where every op is float by choice, not an island).
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Graph
from rctc.ops import QUANT_HELPERS, UPDATE_OPS, lookup


def float_islands(g: Graph) -> list[dict[str, str]]:
    if g.meta.get("mode", "rct") != "rct":
        return []
    out = []
    for n in g.nodes:
        d = lookup(n.op_type)
        if d is None or d.rct != "float-island" or n.op_type in QUANT_HELPERS or n.op_type in UPDATE_OPS:
            continue
        if not any(np.issubdtype(np.dtype(o.dtype), np.floating) for o in n.outputs if o.dtype is not None):
            continue  # runs on integers (a Gather of an integer embedding table)
        if n.phase != "update":
            out.append({"node": n.name, "op_type": n.op_type})
    return out


def island_layers(g: Graph) -> set[str]:
    """The layers (``meta["fwd"]`` or the node's own name) that hold a float island."""
    names = {i["node"] for i in float_islands(g)}
    return {str(n.meta.get("fwd", n.name)) for n in g.nodes if n.name in names}


__all__ = ["float_islands", "island_layers"]

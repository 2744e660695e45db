"""Plain summaries of a compiled graph (node counts by phase, parameter slot table)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rctc.analysis.islands import float_islands
from rctc.ir import Graph
from rctc.slots import has_slot, read_slot


def parameter_table(g: Graph) -> list[dict[str, Any]]:
    """One row per parameter: name, shape, dtype, trainable, and the bitwidth slot where there is one."""
    rows = []
    mode = g.meta.get("mode", "fp32")
    for p in g.params():
        slot = read_slot(g, p) if has_slot(p) else None
        rows.append({
            "name": p.name,
            "shape": list(p.shape),
            "dtype": str(p.dtype),
            "mode": mode,
            "trainable": bool(p.trainable),
            "bits": slot["bits"] if slot else (32 if np.issubdtype(p.dtype, np.floating) else p.dtype.itemsize * 8),
            "min_bits": slot["min_bits"] if slot else None,
            "max_bits": slot["max_bits"] if slot else None,
            "exponent": slot["exp"] if slot else None,
        })
    return rows


def graph_summary(g: Graph) -> dict[str, Any]:
    phases: dict[str, int] = {"forward": 0, "loss": 0, "backward": 0, "update": 0}
    for n in g.nodes:
        ph = n.phase
        phases[ph] = phases.get(ph, 0) + 1
    params = g.params()
    return {
        "mode": g.meta.get("mode"),
        "source": g.meta.get("source"),
        "batch_size": int(g.value(g.meta["model_inputs"][0]).shape[0]),
        "inputs": {v.name: [str(v.dtype), list(v.shape)] for v in g.inputs},
        "outputs": list(g.meta.get("model_outputs", [])),
        "nodes": phases,
        "parameters": len(params),
        "trainable_parameters": sum(1 for p in params if p.trainable),
        "parameter_elements": int(sum(p.size for p in params)),
        "step": int(g.meta.get("step", 0)),
        "elementwise": g.meta.get("rct", {}).get("elementwise", "float") if g.meta.get("mode") == "rct" else None,
        "float_islands": float_islands(g),
    }

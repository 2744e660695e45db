"""The fp32 and qat baselines of a compiled model, built through the same compiler pipelines.

To say "x% less than QAT" the analysis needs the QAT and FP32 training graphs of the same
model and batch size. A compiled rct graph cannot be turned back into its forward graph
reliably (its products, parameters and quantisers are rewritten), and keeping the source
ONNX file in the .rct would double its size. So ``rctc.compiler.compile_graph`` stores a
*forward snapshot* in ``graph.meta["forward_snapshot"]``: the imported forward graph's
structure (nodes, attributes, value shapes / dtypes / kinds, small constants), without the
weights. Costs depend on shapes and widths only, so
``rctc.compiler.baseline_graph`` rebuilds the forward
graph from it with zero-filled parameters (lazily allocated, never touched by the fp32 /
qat passes) and runs the ordinary pipeline of the other mode with the model's own options.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rctc.errors import RctcError
from rctc.ir import Graph

SNAPSHOT_VERSION = 1
INLINE_CONST_ELEMENTS = 4096  # constants up to this size keep their values (shapes, axes, ...)


def _encode(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.tolist(), "dtype": str(v.dtype), "shape": list(v.shape)}
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    return v


def _decode(v: Any) -> Any:
    if isinstance(v, dict) and "__ndarray__" in v:
        return np.asarray(v["__ndarray__"], dtype=np.dtype(v["dtype"])).reshape(v["shape"])
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def snapshot_forward(g: Graph) -> dict[str, Any]:
    """A JSON-serialisable description of an imported forward graph (no weights)."""
    values = []
    for v in g.values.values():
        if v.kind == "temp" or v.kind == "input":
            continue
        keep = v.kind == "const" and v.data is not None and v.size <= INLINE_CONST_ELEMENTS
        values.append([v.name, list(v.shape or ()), str(v.dtype), v.kind, bool(v.trainable),
                       _encode(np.asarray(v.data)) if keep else None])
    return {
        "version": SNAPSHOT_VERSION,
        "name": g.name,
        "values": values,
        "inputs": [[v.name, list(v.shape), str(v.dtype)] for v in g.inputs],
        "nodes": [[n.op_type, n.name, n.domain, [v.name if v is not None else None for v in n.inputs],
                   [[o.name, list(o.shape or ()), str(o.dtype)] for o in n.outputs],
                   {k: _encode(a) for k, a in n.attrs.items()}] for n in g.nodes],
        "outputs": [v.name for v in g.outputs],
        "meta": {k: g.meta[k] for k in ("model_inputs", "model_outputs") if k in g.meta},
    }


def rebuild_forward(snap: dict[str, Any]) -> Graph:
    """The forward graph of a snapshot, parameters and large constants zero-filled."""
    if snap.get("version") != SNAPSHOT_VERSION:
        raise RctcError("this .rct has a forward snapshot of another version; recompile it for QAT / FP32 baselines")
    g = Graph(name=snap["name"])
    for name, shape, dtype, kind, trainable, data in snap["values"]:
        arr = _decode(data) if data is not None else np.zeros(shape, dtype=np.dtype(dtype))
        v = g.add_value(name, shape, dtype, kind, arr)
        v.trainable = trainable
    for name, shape, dtype in snap["inputs"]:
        g.add_input(name, shape, dtype)
    for op, name, domain, ins, outs, attrs in snap["nodes"]:
        g.add_node(op, [g.values[i] if i is not None else None for i in ins],
                   [(o, tuple(s), np.dtype(d)) for o, s, d in outs],
                   {k: _decode(a) for k, a in attrs.items()}, name=name, domain=domain)
    g.outputs = [g.values[o] for o in snap["outputs"]]
    g.meta.update(snap["meta"])
    g.verify()
    return g


__all__ = ["rebuild_forward", "snapshot_forward"]

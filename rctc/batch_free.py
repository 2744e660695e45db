"""Batch-free Reshape targets: what lets a model compiled at one batch size export at any.

Needs two normalisations of the same ONNX model (``rctc.onnx_import.normalize_to_arrays``) at
different batch sizes. Leaves nothing changed: it returns, for each folded Reshape target that
depends on the batch, the target that holds at every batch size (or None where there is none),
which the import records in ``Value.meta["batch_free"]`` and the export writes.
"""

from __future__ import annotations

import numpy as np
import onnx


def dynamic_batch(model: onnx.ModelProto) -> bool:
    """Whether the first graph input's leading dimension is symbolic or unknown in the file."""
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or not tt.shape.dim:
            return False
        d = tt.shape.dim[0]
        return not (d.HasField("dim_value") and d.dim_value > 0)
    return False


def batch_free_targets(
    norm: onnx.ModelProto, consts: dict[str, np.ndarray], norm2: onnx.ModelProto, consts2: dict[str, np.ndarray]
) -> dict[str, np.ndarray | None]:
    """Reshape targets that folding computed from the bound batch, rewritten to hold at any batch.

    ``norm`` / ``consts`` and ``norm2`` / ``consts2`` are the same model normalised at two batch
    sizes; the entries of a folded Reshape target that differ depend on the batch. Each becomes 0
    (copy the input's dimension) where the input's dimension at that axis equals it at both batch
    sizes, and the one left, if any, -1 (read with ``allowzero=0``). Returns target constant
    name -> batch-free target, or None for a batch-dependent target with no such form (it pins
    the batch).
    """
    shapes1, shapes2 = (
        {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
         for vi in list(m.graph.value_info) + list(m.graph.input)} for m in (norm, norm2)
    )
    reshapes2 = {n.output[0]: n for n in norm2.graph.node if n.op_type == "Reshape"}
    out: dict[str, np.ndarray | None] = {}
    refused: set[str] = set()
    for n in norm.graph.node:
        if n.op_type != "Reshape" or n.output[0] not in reshapes2 or n.input[1] not in consts:
            continue
        n2 = reshapes2[n.output[0]]
        t1, t2 = consts[n.input[1]], consts2.get(n2.input[1])
        if t2 is None or t1.shape != t2.shape or np.array_equal(t1, t2):
            continue
        in1, in2 = shapes1.get(n.input[0], []), shapes2.get(n2.input[0], [])
        free = t1.astype(np.int64).copy()
        left = []
        for i in np.flatnonzero(t1 != t2):
            if i < len(in1) and i < len(in2) and in1[i] == t1[i] and in2[i] == t2[i]:
                free[i] = 0
            else:
                left.append(i)
        # allowzero=1 (dynamo writes it) means the same as 0 for a target without zeros; the
        # export writes allowzero=0 with a batch-free target
        literal_zero = 0 in t1 and any(a.name == "allowzero" and a.i for a in n.attribute)
        ok = not literal_zero and (not left or (len(left) == 1 and -1 not in free))
        if ok and left:
            free[left[0]] = -1
        name = n.input[1]
        if not ok or (name in out and not np.array_equal(out[name], free)):  # type: ignore[arg-type]
            refused.add(name)
        else:
            out[name] = free
    out.update(dict.fromkeys(refused))  # None: batch-dependent with no batch-free form
    return out


__all__ = ["batch_free_targets", "dynamic_batch"]

"""Checks of an imported model once shape inference has run: what no runtime can execute.

Needs: the model after ``onnx.shape_inference`` (value_info filled) and its constants as arrays.
Leaves: the model unchanged; a model with a negative inferred size or a Conv / ConvTranspose
``group`` that disagrees with its channels is refused with one line naming the node.
"""

from __future__ import annotations

import numpy as np
import onnx

from rctc.errors import RctcError


def check_conv_groups(model: onnx.ModelProto, consts: dict[str, np.ndarray], source: str) -> None:
    """A Conv / ConvTranspose ``group`` must be >= 1 and agree with the input's and the weight's
    channels (ONNX: X has C = group * W.shape[1] channels for Conv, W.shape[0] for ConvTranspose)."""
    shapes = {}
    for vi in list(model.graph.input) + list(model.graph.value_info):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for t in model.graph.initializer:
        shapes[t.name] = list(t.dims)
    for name, arr in consts.items():
        shapes[name] = list(np.shape(arr))
    for n in model.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose") or len(n.input) < 2:
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        x, w = shapes.get(n.input[0]), shapes.get(n.input[1])
        name = f"{n.op_type} '{n.name or '?'}'"
        if group < 1:
            raise RctcError(f"{source}: {name} has group={group}; it must be >= 1")
        if not x or not w or len(x) < 2 or len(w) < 2 or x[1] is None or w[0] is None or w[1] is None:
            continue
        c_in = x[1]
        if n.op_type == "Conv":
            ok = c_in == group * w[1] and w[0] % group == 0
        else:
            ok = c_in == w[0] and c_in % group == 0
        if not ok:
            raise RctcError(f"{source}: {name} has group={group}, input channels {c_in} and weight shape {w}, which "
                            "do not agree (ONNX: channels = group x W.shape[1] for Conv); fix the model")


def refuse_negative_sizes(model: onnx.ModelProto, source: str) -> None:
    """A negative dimension after shape inference (a pool window or pads larger than the input, a
    ConvTranspose cropped past nothing) is a model no runtime can run: refuse it naming the node."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for vi in list(model.graph.value_info) + list(model.graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if any(d is not None and d < 0 for d in dims):
            n = producer.get(vi.name)
            where = f"node '{n.name or '?'}' ({n.op_type})" if n is not None else "the graph"
            shape = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
            raise RctcError(f"{source}: {where} gives '{vi.name}' the impossible shape {shape} (a window, kernel or "
                            "pads larger than its input); fix the model")

"""IR -> ONNX: serialise a Graph (or the part of it that computes some outputs) as a ModelProto."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rctc.ir import Graph, Node, Value
from rctc.onnx_attrs import attrs_to_proto

RCTC_DOMAIN = "rctc"
ONNX_OPSET = 18
IR_VERSION = 8


def value_info(v: Value) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(v.name, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape or []))


def node_proto(n: Node) -> onnx.NodeProto:
    proto = helper.make_node(
        n.op_type,
        [v.name if v is not None else "" for v in n.inputs],
        [o.name for o in n.outputs],
        name=n.name,
        domain=n.domain,
    )
    proto.attribute.extend(attrs_to_proto(n.attrs))
    return proto


def graph_to_model(
    g: Graph,
    outputs: Sequence[Value] | None = None,
    nodes: Sequence[Node] | None = None,
    initializers: dict[str, np.ndarray] | None = None,
    inputs: Sequence[Value] | None = None,
    value_infos: bool = True,
) -> onnx.ModelProto:
    """Serialise ``nodes`` (default: all) of ``g`` into a model with the given outputs.

    ``initializers`` overrides the data written for constant / state values (e.g. float
    parameters in an export); by default every non-temporary value's own data is written.
    With ``inputs`` None every graph input is declared, read or not (the graph's interface: a
    model with no parameters still has its ``lr`` input); given ``inputs`` are kept where read.
    """
    nodes = list(g.nodes if nodes is None else nodes)
    outputs = list(g.outputs if outputs is None else outputs)
    used: dict[str, Value] = {}
    for n in nodes:
        for v in n.inputs:
            if v is not None:
                used[v.name] = v
    if inputs is None:
        inputs = list(g.inputs)
    else:
        inputs = [v for v in inputs if v.name in used or v in outputs]
    inits = []
    for name, v in used.items():
        if v.kind in ("param", "buffer", "const"):
            arr = initializers.get(name) if initializers and name in initializers else v.data
            inits.append(numpy_helper.from_array(np.asarray(arr), name))
    if initializers:
        for name, arr in initializers.items():
            if name not in used:
                inits.append(numpy_helper.from_array(np.asarray(arr), name))
    produced = [o for n in nodes for o in n.outputs if o not in outputs]
    graph = helper.make_graph(
        [node_proto(n) for n in nodes],
        g.name,
        [value_info(v) for v in inputs],
        [value_info(v) for v in outputs],
        initializer=inits,
        value_info=[value_info(v) for v in produced] if value_infos else None,
    )
    opsets = [helper.make_opsetid("", ONNX_OPSET)]
    if any(n.domain == RCTC_DOMAIN for n in nodes):
        opsets.append(helper.make_opsetid(RCTC_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="rctc")
    model.ir_version = IR_VERSION
    return model

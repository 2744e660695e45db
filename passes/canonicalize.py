"""canonicalize: put an imported forward graph into the form the training passes expect.

Needs: an imported forward graph (rctc.onnx_import.to_ir).
Leaves: no Identity nodes (except ones producing a graph output), no Sum (Add chains
instead), Gemm with transA=0, every Dropout with two outputs (y, mask) and its ratio as
an attribute (it drops only when the runtime is in training mode), and
``graph.meta["logits"]``: the value the loss reads (the input of a final Softmax /
LogSoftmax, so cross-entropy is fused as a stable log-softmax + NLL).
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Graph
from rctc.options import CompileOptions


def _remove_identities(g: Graph) -> None:
    for node in list(g.nodes):
        if node.op_type != "Identity" or node.outputs[0] in g.outputs:
            continue
        g.replace_value(node.outputs[0], node.inputs[0])
        g.remove_node(node)


def _sum_to_add(g: Graph) -> None:
    for node in list(g.nodes):
        if node.op_type != "Sum":
            continue
        ins = [v for v in node.inputs if v is not None]
        out = node.outputs[0]
        if len(ins) == 1:
            acc = ins[0]
            if out in g.outputs and acc.producer is None:  # Sum(x) as the output: an Identity keeps its name
                acc = g.add_node("Identity", [acc], [(f"{out.name}.id", out.shape, out.dtype)],
                                 name=f"{node.name}.identity", before=node).outputs[0]
        else:
            acc = ins[0]
            for i, v in enumerate(ins[1:]):
                last = i == len(ins) - 2
                shape = out.shape if last else np.broadcast_shapes(acc.shape, v.shape)
                acc = g.add_node("Add", [acc, v], [(f"{out.name}.sum{i}", shape, out.dtype)],
                                 name=f"{node.name}.add{i}", before=node).outputs[0]
        g.replace_value(out, acc, take_name=acc.producer is not None and acc.kind == 'temp')
        g.remove_node(node)


def _gemm_trans_a(g: Graph) -> None:
    for node in list(g.nodes):
        if node.op_type != "Gemm" or not node.attrs.get("transA", 0):
            continue
        a = node.inputs[0]
        t = g.add_node("Transpose", [a], [(f"{a.name}.T", a.shape[::-1], a.dtype)], {"perm": [1, 0]},
                       name=f"{node.name}.transA", before=node)
        node.set_input(0, t.outputs[0])
        node.attrs["transA"] = 0


def _dropout_mask(g: Graph) -> None:
    for node in list(g.nodes):
        if node.op_type != "Dropout":
            continue
        ratio = node.attrs.get("ratio", 0.5)
        ratio_in = node.input(1)
        if ratio_in is not None:
            if ratio_in.data is None:
                continue  # a computed ratio: leave as is (kernel reads it)
            ratio = float(np.asarray(ratio_in.data).reshape(-1)[0])
        x, y = node.inputs[0], node.outputs[0]
        new = g.add_node("Dropout", [x], [(f"{y.name}.d", y.shape, y.dtype), (f"{y.name}.mask", y.shape, np.bool_)],
                         {"ratio": float(ratio)}, name=f"{node.name}.train", before=node)
        g.replace_value(y, new.outputs[0], take_name=True)
        for extra in node.outputs[1:]:
            if extra in g.outputs:  # the mask as a model output keeps its name
                g.replace_value(extra, new.outputs[1], take_name=True)
            elif extra.uses:
                g.replace_value(extra, new.outputs[1])
        g.remove_node(node)


def _find_logits(g: Graph) -> None:
    outs = g.meta.get("model_outputs") or [v.name for v in g.outputs]
    out = g.value(outs[0])
    g.meta["output_activation"] = "none"
    g.meta["logits"] = out.name
    prod = out.producer
    if prod is not None and prod.op_type in ("Softmax", "LogSoftmax"):
        axis = prod.attrs.get("axis", -1) % len(out.shape)
        if all(d == 1 for d in out.shape[axis + 1:]):  # the class axis is the last non-trivial one
            g.meta["output_activation"] = prod.op_type.lower()
            g.meta["logits"] = prod.inputs[0].name


def run(g: Graph, options: CompileOptions) -> None:
    _remove_identities(g)
    _sum_to_add(g)
    _gemm_trans_a(g)
    _dropout_mask(g)
    g.remove_unused()
    _find_logits(g)
    for n in g.nodes:
        n.meta.setdefault("phase", "forward")

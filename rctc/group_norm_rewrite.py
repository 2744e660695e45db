"""Rewrite ONNX ``GroupNormalization`` into the ops PyTorch's exporter writes for ``nn.GroupNorm``.

Needs: a model before the opset conversion (the op's scale / bias changed meaning in opset 21:
per group in 18-20, per channel from 21).
Leaves: each GroupNormalization replaced, in place, by
``Reshape(x, [N, G, -1]) -> InstanceNormalization(ones[G], zeros[G]) -> Reshape(Shape(x))``
followed by the affine part with the node's own ``scale`` / ``bias`` tensors, so they stay the
user's parameters under their names: per channel (opset >= 21) ``* Reshape(scale, [C, 1, ...])
+ Reshape(bias, ...)``; per group (opset 18-20) the same on the grouped tensor before reshaping
back. ``stash_type`` (opset 21's compute precision) is ignored: rctc computes in float32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rctc.errors import UnsupportedOpError


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _rank(model: onnx.ModelProto, name: str) -> int | None:
    for vi in [*model.graph.input, *model.graph.value_info]:
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            return len(vi.type.tensor_type.shape.dim)
    return None


def decompose_group_norm(model: onnx.ModelProto, source: str) -> None:
    """Replace every GroupNormalization of ``model`` (in place); see the module docstring."""
    graph = model.graph
    if not any(n.op_type == "GroupNormalization" and n.domain in ("", "ai.onnx") for n in graph.node):
        return
    per_channel = _opset(model) >= 21
    try:  # the model is not checked yet: a failing inference leaves the ranks the graph itself states
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - the checker reports what is wrong with the model right after
        inferred = model
    out: list[onnx.NodeProto] = []
    for i, n in enumerate(graph.node):
        if n.op_type != "GroupNormalization" or n.domain not in ("", "ai.onnx"):
            out.append(n)
            continue
        groups = int(_attr(n, "num_groups", 0))
        x, scale, bias = n.input[0], n.input[1], n.input[2]
        rank = _rank(inferred, x)
        if groups < 1 or rank is None or rank < 3:
            raise UnsupportedOpError(f"{source}: GroupNormalization {n.name or '?'!r} needs num_groups >= 1 and an "
                                     "input of known rank >= 3; re-export with static ranks")
        p = f"{n.name or 'group_norm'}.{i}"
        consts = {f"{p}.grouped_shape": np.array([0, groups, -1], np.int64),
                  f"{p}.ones": np.ones(groups, np.float32), f"{p}.zeros": np.zeros(groups, np.float32),
                  f"{p}.affine_shape": np.array([-1] + [1] * (rank - 2 if per_channel else 1), np.int64)}
        graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        t = {k: f"{p}.{k}" for k in ("grouped", "normed", "shape", "scale", "bias", "scaled", "shifted")}
        eps = float(_attr(n, "epsilon", 1e-5))
        steps = [helper.make_node("Reshape", [x, f"{p}.grouped_shape"], [t["grouped"]]),
                 helper.make_node("InstanceNormalization", [t["grouped"], f"{p}.ones", f"{p}.zeros"], [t["normed"]],
                                  epsilon=eps),
                 helper.make_node("Shape", [x], [t["shape"]]),
                 helper.make_node("Reshape", [scale, f"{p}.affine_shape"], [t["scale"]]),
                 helper.make_node("Reshape", [bias, f"{p}.affine_shape"], [t["bias"]])]
        if per_channel:
            steps += [helper.make_node("Reshape", [t["normed"], t["shape"]], [t["scaled"]]),
                      helper.make_node("Mul", [t["scaled"], t["scale"]], [t["shifted"]]),
                      helper.make_node("Add", [t["shifted"], t["bias"]], [n.output[0]])]
        else:
            steps += [helper.make_node("Mul", [t["normed"], t["scale"]], [t["scaled"]]),
                      helper.make_node("Add", [t["scaled"], t["bias"]], [t["shifted"]]),
                      helper.make_node("Reshape", [t["shifted"], t["shape"]], [n.output[0]])]
        for k, s in enumerate(steps):
            s.name = f"{p}/{s.op_type.lower()}{k}"
        out.extend(steps)
    del graph.node[:]
    graph.node.extend(out)

"""Constant folding at the ONNX level, before the model becomes IR.

Folds Constant, ConstantOfShape, Shape of a static shape (so Shape-derived Reshape
targets become constants), CastLike of a constant to a typed tensor, Identity chains and every
deterministic node whose inputs are all constants, round after round until nothing changes.
Evaluation uses ``onnx.reference`` for anything not handled inline, so folding follows the ONNX
spec exactly. Folded tensors become initializers named after the
node output they replace; Identity of a constant, and Reshape / Flatten / Squeeze / Unsqueeze of a
constant nothing else reads, keep the constant's own name (so weights keep their names; the
original shape is returned by :func:`fold_in_place` so export can give the weight back in it).

Invariant left: every float initializer of the input keeps its name. One with two or more
dimensions also keeps its layout: a ``Transpose`` of it (PyTorch's ``MatMul(x, Transpose(W))``
for ``nn.Linear`` on 3-D inputs and attention projections) stays in the graph as a layout node
instead of being folded into a new tensor named after the Transpose output, so the parameter
trained and exported is the user's ``W``. A reshaping fold's new shape is reported with the
file's shape (``source_shapes``), which the export restores.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from rctc.ops import RESHAPE_OPS

# ops that rctc accepts only when folding removes them (no runtime kernel)
FOLDABLE_ONLY = {
    "Constant", "ConstantOfShape", "Shape", "Size", "Range", "Cast", "CastLike", "Slice",
    "Equal", "Where", "Floor", "Ceil", "Gather", "Unsqueeze", "Squeeze", "Concat",
}
# value-preserving ops: folding one of them over a constant nothing else reads keeps the
# constant's name (Caffe2 exports reshape their FC weights, PyTorch's flatten Conv biases, ...)
_RESHAPING = RESHAPE_OPS
NEVER_FOLD = {
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli", "Dropout",
}


SKELETON_MAX_ELEMENTS = 4096


def shape_skeleton(model: onnx.ModelProto, consts: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` for shape inference only: the nodes, inputs and outputs, with each large
    constant declared as a typed graph input instead of carrying its data.

    Shape inference serialises the whole model; with the weights in it that costs seconds on
    large nets (and fails above protobuf's 2 GB). Small constants (shape vectors, axes, scalars)
    keep their data so ``data_prop`` still sees them. ``consts`` (name -> array) replaces the
    model's initializers when given.
    """
    graph = model.graph
    skel = onnx.ModelProto()
    skel.ir_version = model.ir_version
    skel.opset_import.extend(model.opset_import)
    skel.functions.extend(model.functions)
    skel.graph.name = graph.name
    skel.graph.node.extend(graph.node)
    skel.graph.input.extend(graph.input)
    skel.graph.output.extend(graph.output)
    skel.graph.value_info.extend(graph.value_info)
    declared = {i.name for i in graph.input}
    if consts is None:
        for t in graph.initializer:
            numel = int(np.prod(t.dims)) if len(t.dims) else 1
            if numel <= SKELETON_MAX_ELEMENTS:
                skel.graph.initializer.append(t)
            elif t.name not in declared:
                skel.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        return skel
    for name, arr in consts.items():
        if arr.size <= SKELETON_MAX_ELEMENTS:
            skel.graph.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
        elif name not in declared:
            dtype = helper.np_dtype_to_tensor_dtype(arr.dtype)
            skel.graph.input.append(helper.make_tensor_value_info(name, dtype, list(arr.shape)))
    return skel


def static_shapes(model: onnx.ModelProto, consts: dict[str, np.ndarray] | None = None) -> dict[str, tuple[int, ...]]:
    """Name -> static shape of every value onnx's (non-strict) shape inference can fully infer."""
    return _static_infos(model, consts)[0]


def _static_infos(
    model: onnx.ModelProto, consts: dict[str, np.ndarray] | None = None
) -> tuple[dict[str, tuple[int, ...]], dict[str, np.dtype]]:
    """(name -> static shape, name -> element type) of the values shape inference resolves."""
    skel = shape_skeleton(model, consts)
    try:
        inferred = shape_inference.infer_shapes(skel, data_prop=True)
    except Exception:  # an exporter's value_info can contradict a folded constant: infer without it
        del skel.graph.value_info[:]
        try:
            inferred = shape_inference.infer_shapes(skel, data_prop=True)
        except Exception:  # folding is best effort; strict inference runs later
            return {}, {}
    out, types = {}, {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.elem_type:
            types[vi.name] = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            out[vi.name] = tuple(d.dim_value for d in tt.shape.dim)
    return out, types


def _eval_node(node: onnx.NodeProto, args: list[np.ndarray | None], opset: list[onnx.OperatorSetIdProto]) -> list:
    if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return [numpy_helper.to_array(node.attribute[0].t)]
    if node.op_type == "Identity":
        return [args[0]]
    if node.op_type == "ConstantOfShape":
        value = np.zeros(1, np.float32)
        for a in node.attribute:
            if a.name == "value":
                value = numpy_helper.to_array(a.t)
        return [np.full(tuple(int(d) for d in args[0]), value.reshape(-1)[0], dtype=value.dtype)]
    ins = [f"in{i}" if a is not None else "" for i, a in enumerate(args)]
    feeds = {f"in{i}": a for i, a in enumerate(args) if a is not None}
    n = helper.make_node(node.op_type, ins, [f"out{i}" for i in range(len(node.output))], domain=node.domain)
    n.attribute.extend(node.attribute)
    vis_in = [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()
    ]
    vis_out = [
        helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.UNDEFINED, None) for i in range(len(node.output))
    ]
    m = helper.make_model(helper.make_graph([n], "fold", vis_in, vis_out), opset_imports=list(opset))
    from onnx.reference import ReferenceEvaluator  # only models with foldable ops pay its ~30 ms import

    return list(ReferenceEvaluator(m).run(None, feeds))


def fold_in_place(
    model: onnx.ModelProto, max_rounds: int = 64, source_shapes: dict[str, tuple[int, ...]] | None = None
) -> dict[str, np.ndarray]:
    """Fold the constant subgraphs of ``model`` (changed in place) and move every constant out of it.

    Returns name -> array of each constant the folded graph reads (initializers and folded node
    outputs); ``model`` keeps the nodes, inputs and outputs but no initializers, so later steps
    (shape inference on :func:`shape_skeleton`, IR building) never copy the weights through protobuf.
    ``source_shapes``, when given, receives name -> original shape of each initializer a reshaping
    fold gave a new shape under its own name.
    """
    graph = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weights = {name for name, a in consts.items() if np.issubdtype(a.dtype, np.floating)}
    layout_kept = {name for name in weights if consts[name].ndim >= 2}
    del graph.initializer[:]
    graph_outputs = {o.name for o in graph.output}
    renames: dict[str, str] = {}
    for _ in range(max_rounds):
        shapes, types = _static_infos(model, consts)
        users = Counter(i for n in graph.node for i in n.input if i)
        kept: list[onnx.NodeProto] = []
        changed = False
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name in renames:
                    node.input[i] = renames[name]
            inputs = [i for i in node.input if i]
            foldable = node.op_type not in NEVER_FOLD and not node.domain and not any(
                a.type == onnx.AttributeProto.GRAPH for a in node.attribute
            )
            if node.op_type == "Shape" and node.input[0] in shapes and foldable:
                shape = np.array(shapes[node.input[0]], dtype=np.int64)
                start = next((a.i for a in node.attribute if a.name == "start"), 0)
                end = next((a.i for a in node.attribute if a.name == "end"), None)
                consts[node.output[0]] = shape[start:end]
                changed = True
                continue
            if (node.op_type == "CastLike" and foldable and node.input[0] in consts
                    and node.input[1] not in consts and node.input[1] in types):
                # the result depends on the other operand's type only (dynamo's scale constants)
                consts[node.output[0]] = np.asarray(consts[node.input[0]]).astype(types[node.input[1]])
                changed = True
                continue
            if node.op_type == "Transpose" and node.input[0] in layout_kept:
                foldable = False  # a layout node: the weight keeps its name and layout
            if foldable and all(i in consts for i in inputs):
                if (
                    node.op_type == "Identity"
                    and node.input[0] in consts
                    and node.output[0] not in graph_outputs
                ):
                    renames[node.output[0]] = node.input[0]
                    changed = True
                    continue
                args = [consts[i] if i else None for i in node.input]
                results = _eval_node(node, args, list(model.opset_import))
                src = node.input[0] if node.input else ""
                if (
                    node.op_type in _RESHAPING
                    and users[src] == 1
                    and src not in graph_outputs
                    and node.output[0] not in graph_outputs
                ):  # a reshaped weight keeps the weight's name (its only use was this node)
                    if source_shapes is not None and src in weights:
                        source_shapes.setdefault(src, tuple(consts[src].shape))
                    consts[src] = np.asarray(results[0])
                    renames[node.output[0]] = src
                    changed = True
                    continue
                for name, arr in zip(node.output, results):
                    if name:
                        consts[name] = np.asarray(arr)
                changed = True
                continue
            kept.append(node)
        del graph.node[:]
        graph.node.extend(kept)
        if not changed:
            break
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep_vi = [vi for vi in graph.value_info if vi.name not in consts]
    del graph.value_info[:]
    graph.value_info.extend(keep_vi)
    return {name: arr for name, arr in consts.items() if name in used}


"""ONNX frontend: load, check, normalise and convert an ONNX model into the rctc IR.

Steps: safe loading (external data must stay in the model's folder) -> unsupported-op check
(shape arithmetic aside: it folds once the batch is bound) -> ``onnx.checker`` -> old-IR
clean-up (graph inputs that repeat initializer names) -> batch binding (a zero-size dimension
is a size, not a symbol) -> ``onnx.version_converter`` to ``TARGET_OPSET`` (an opset 19-22
model the converter cannot lower is read as 18 where each node means the same) -> constant
folding (``fold_in_place``: the constants leave the protobuf as numpy arrays; weights keep
their names and layout) -> spec clean-ups the converter / onnx's opset-18 shape inference need
(scalar Dropout ratio, ceil-mode pools) -> Dropout's training_mode a constant, BatchNormalization
in its inference form (whatever mode the file was exported in) -> ``onnx.shape_inference`` on
a weight-less skeleton -> IR (``to_ir``) -> the op check of what remains -> for a dynamic batch,
the batch-free form of Shape-derived Reshape targets (``rctc.batch_free``), which export writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, helper, numpy_helper, shape_inference, version_converter

from rctc import ops
from rctc.batch_free import batch_free_targets, dynamic_batch
from rctc.constant_folding import FOLDABLE_ONLY, NEVER_FOLD, fold_in_place, shape_skeleton
from rctc.errors import RctcError, UnsupportedOpError
from rctc.group_norm_rewrite import decompose_group_norm
from rctc.inferred_checks import check_conv_groups, refuse_negative_sizes
from rctc.ir import Graph
from rctc.onnx_attrs import attrs_from_proto
from rctc.onnx_cleanups import (
    TARGET_OPSET,
    accept_newer_opset,
    constant_dropout_modes,
    fix_pool_ceil_mode,
    inference_batchnorm,
    scalar_dropout_inputs,
    upsample_as_resize,
    upsample_outputs,
)
from rctc.ops.limits import NOT_A_TENSOR, UNSUPPORTED_TYPE, ZERO_BATCH
from rctc.rnn_unroll import RNN_OPS, unroll_rnns

# input slots that hold parameters / persistent buffers, per op type (from the op definitions;
# the rest of a node's float constants are consts)
PARAM_SLOTS = ops.PARAM_SLOTS
BUFFER_SLOTS = ops.BUFFER_SLOTS
#: value-preserving ops a weight may be read through (its role comes from the op behind them)
LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load an ONNX file, resolving external data only inside the model's folder."""
    p = Path(path)
    if not p.exists():
        raise RctcError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise RctcError(f"{p}: is a directory, expected an .onnx file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise RctcError(
            f"{p}: not a readable ONNX model ({type(exc).__name__}); is the file truncated or not ONNX?"
        ) from exc
    from rctc.frontend_checks import check_model_file  # the file's structure, before any tensor is read

    check_model_file(model, p)
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise RctcError(f"{p}: not an ONNX model (no graph nodes); is this the right file?")
    base = p.resolve().parent
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        target = (base / info.location).resolve()
        if os.path.isabs(info.location) or not target.is_relative_to(base):
            raise RctcError(
                f"{p}: tensor {tensor.name!r} points to external data {info.location!r} outside the model's "
                "folder; refusing to read it (move the data file next to the model)"
            )
        if not target.is_file():
            raise RctcError(f"{p}: external data file {info.location!r} for {tensor.name!r} is missing")
        if info.length and target.stat().st_size < (info.offset or 0) + info.length:
            raise RctcError(
                f"{p}: external data file {info.location!r} is shorter than tensor {tensor.name!r} needs "
                f"({target.stat().st_size} < {(info.offset or 0) + info.length} bytes); is it complete?"
            )
    try:
        external_data_helper.load_external_data_for_model(model, str(base))
    except Exception as exc:
        raise RctcError(f"{p}: cannot read external data ({exc}); is the .data file complete?") from exc
    return model


#: ops rewritten into other ops before the opset conversion (not kernels of their own)
#: (Upsample: the opset conversion makes it Resize; GRU / LSTM: unrolled into their cells, rctc/rnn_unroll.py;
#: GroupNormalization: PyTorch's InstanceNormalization form, rctc/group_norm_rewrite.py)
REWRITTEN_AT_IMPORT = {"Gelu", "Upsample", "GroupNormalization", *RNN_OPS}


def _decompose_gelu(model: onnx.ModelProto) -> None:
    """Rewrite ONNX ``Gelu`` (opset 20, above the import opset: the version converter cannot lower
    it) into opset-18 ops, in place: ``x * (1 + Erf(x / sqrt 2)) / 2``, or for
    ``approximate="tanh"`` ``x * (1 + Tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2``."""
    graph = model.graph
    if not any(n.op_type == "Gelu" and n.domain in ("", "ai.onnx") for n in graph.node):
        return
    consts = {"sqrt2": 2.0**0.5, "one": 1.0, "half": 0.5, "c": 0.044715, "k": (2.0 / np.pi) ** 0.5}
    names = {k: f"rctc.gelu.{k}" for k in consts}
    graph.initializer.extend(numpy_helper.from_array(np.array(v, np.float32), names[k]) for k, v in consts.items())
    out: list[onnx.NodeProto] = []
    for i, n in enumerate(graph.node):
        if n.op_type != "Gelu" or n.domain not in ("", "ai.onnx"):
            out.append(n)
            continue
        x, y = n.input[0], n.output[0]
        tag = f"{n.name or 'gelu'}.{i}"
        t = {k: f"{y}.gelu{i}.{k}" for k in ("a", "b", "c", "d", "e", "f", "g", "h")}
        approx = next((a.s.decode() for a in n.attribute if a.name == "approximate"), "none")
        if approx == "tanh":
            steps = [("Mul", [x, x], t["a"]), ("Mul", [t["a"], x], t["b"]), ("Mul", [t["b"], names["c"]], t["c"]),
                     ("Add", [x, t["c"]], t["d"]), ("Mul", [t["d"], names["k"]], t["e"]), ("Tanh", [t["e"]], t["f"])]
        else:
            steps = [("Div", [x, names["sqrt2"]], t["e"]), ("Erf", [t["e"]], t["f"])]
        steps += [("Add", [t["f"], names["one"]], t["g"]), ("Mul", [x, t["g"]], t["h"]),
                  ("Mul", [t["h"], names["half"]], y)]
        out.extend(helper.make_node(op, ins, [o], name=f"{tag}/{op.lower()}{j}")
                   for j, (op, ins, o) in enumerate(steps))
    del graph.node[:]
    graph.node.extend(out)


def _drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """Old IR versions list initializers as graph inputs too; they are not real inputs.

    IR version 3 requires every initializer to be a graph input (``onnx.version_converter``
    rejects an initializer that is not one), so once they are dropped the model follows IR 4
    rules and is marked as such.
    """
    init_names = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in init_names]
    if len(keep) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(keep)
    if model.ir_version < 4:
        model.ir_version = 4


def _bind_batch(model: onnx.ModelProto, batch_size: int) -> None:
    """Bind symbolic / unknown leading dims of graph inputs (and outputs) to the batch size."""
    for vi in list(model.graph.input) + list(model.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        for i, dim in enumerate(tt.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if dim.HasField("dim_value") and dim.dim_value == 0:  # a zero-size dimension, not a symbol
                if i > 0:
                    continue
                raise RctcError(
                    f"{vi.name!r} {ZERO_BATCH}; rctc takes it as the batch, bound to "
                    "--batch-size (>= 1): give that dimension a size or make it symbolic"
                )
            if i == 0:
                dim.Clear()
                dim.dim_value = batch_size
            elif vi in model.graph.input:
                raise RctcError(
                    f"input {vi.name!r} has a symbolic dimension {dim.dim_param or '?'} at axis {i}; "
                    "only the batch (first) dimension may be dynamic. Re-export with a fixed size"
                )
    for vi in model.graph.output:  # outputs are re-inferred
        vi.type.tensor_type.ClearField("shape")


#: the tensor element types rctc compiles (numpy dtypes the runtime, the .rct file and the C backend hold)
ELEMENT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                           onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
                           onnx.TensorProto.INT64, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
                           onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL})


def _check_element_types(model: onnx.ModelProto, source: str) -> None:
    """Refuse, in one line, a tensor of a type rctc does not hold (bfloat16, 2/4-bit ints, float8,
    strings): a graph input / output / initializer / annotated value, or a Cast / Constant to one."""
    g = model.graph
    readers = {i: n for n in reversed(g.node) for i in n.input}

    def refuse(what: str, name: str, t: int) -> None:
        node = readers.get(name)
        by = f" (read by {node.op_type} node {node.name or node.output[0]!r})" if node is not None else ""
        kind = helper.tensor_dtype_to_string(t).removeprefix("TensorProto.")
        raise RctcError(f"{source}: {what} {name!r}{by} {UNSUPPORTED_TYPE} {kind}; rctc handles float16 / float32 / "
                        "float64, integer and bool tensors")

    for what, vis in (("input", g.input), ("output", g.output), ("value", g.value_info)):
        for vi in vis:
            kind = vi.type.WhichOneof("value")
            if kind not in (None, "tensor_type"):
                raise RctcError(f"{source}: {what} {vi.name!r} {NOT_A_TENSOR} ({kind.removesuffix('_type')}); "
                                "rctc compiles tensors only")
            t = vi.type.tensor_type.elem_type if kind == "tensor_type" else 0
            if t and t not in ELEMENT_TYPES:
                refuse(what, vi.name, t)
    for init in g.initializer:
        if init.data_type not in ELEMENT_TYPES:
            refuse("initializer", init.name, init.data_type)
    for n in g.node:
        for a in n.attribute:
            t = a.i if n.op_type == "Cast" and a.name == "to" else a.t.data_type if a.type == a.TENSOR else 0
            if t and t not in ELEMENT_TYPES:
                refuse(f"{n.op_type} node output", n.output[0], t)


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


def normalize_to_arrays(
    model: onnx.ModelProto,
    batch_size: int,
    source: str = "model",
    source_shapes: dict[str, tuple[int, ...]] | None = None,
    rnn_states: set[str] | None = None,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Check, bind the batch dim, convert opsets, fold constants and infer shapes.

    Returns the normalised model *without* initializers and name -> array of its constants
    (so the weights are not copied through protobuf again); ``model`` itself is not changed.
    ``source_shapes`` receives the file's shape of each weight folding reshaped under its name;
    ``rnn_states`` the initializers that are an unrolled GRU / LSTM's constant initial state.
    """
    if batch_size < 1:
        raise RctcError(f"--batch-size must be >= 1, got {batch_size}")
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    model = model_copy
    # before the checker (which refuses opset 18-20's now-deprecated form) and the opset conversion
    # (the op's meaning changed in opset 21)
    decompose_group_norm(model, source)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise RctcError(f"{source}: invalid ONNX model: {first}") from exc
    _drop_initializer_inputs(model)
    _check_element_types(model, source)
    _bind_batch(model, batch_size)
    custom = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        bad = [f"{n.domain}::{n.op_type} ({n.name or '?'})" for n in model.graph.node if n.domain in custom]
        raise UnsupportedOpError(f"{source}: unsupported custom-domain op(s): {', '.join(bad[:20])}")
    _decompose_gelu(model)
    upsampled = upsample_outputs(model)
    if _opset(model) != TARGET_OPSET:
        try:
            model = version_converter.convert_version(model, TARGET_OPSET)
        except Exception as exc:
            if _opset(model) < TARGET_OPSET:
                raise RctcError(
                    f"{source}: cannot convert opset {_opset(model)} to {TARGET_OPSET} ({str(exc).splitlines()[0]})"
                ) from exc
            accept_newer_opset(model, source)
        # the converter keeps the IR version: an old model (IR 3/4) would claim opset 18 with an
        # IR version too old for it
        model.ir_version = max(model.ir_version, helper.find_min_ir_version_for(list(model.opset_import)))
    upsample_as_resize(model, upsampled)
    consts = fold_in_place(model, source_shapes=source_shapes)
    states = unroll_rnns(model, consts, source)
    if rnn_states is not None:
        rnn_states |= states
    fix_pool_ceil_mode(model, consts)
    scalar_dropout_inputs(model, consts)
    constant_dropout_modes(model, consts, source)
    inference_batchnorm(model, source)
    try:  # on the weight-less skeleton: fast, and no 2 GB protobuf limit
        inferred = shape_inference.infer_shapes(
            shape_skeleton(model, consts), check_type=True, strict_mode=True, data_prop=True
        )
    except Exception as exc:
        raise RctcError(f"{source}: shape inference failed: {str(exc).strip().splitlines()[0]}") from exc
    for field in ("value_info", "output"):
        del getattr(model.graph, field)[:]
        getattr(model.graph, field).extend(getattr(inferred.graph, field))
    refuse_negative_sizes(model, source)
    check_conv_groups(model, consts, source)
    return model, consts


def shape_arithmetic(model: onnx.ModelProto) -> set[int]:
    """Indices of the nodes whose outputs follow from constants and tensor shapes alone.

    Seeds: initializers, ``Constant`` outputs and ``Shape`` / ``Size`` outputs (static once the
    batch is bound); a node all of whose inputs are such values is itself one (unless it draws
    random numbers). Constant folding removes these nodes (legacy multi-head-attention exports
    compute their reshape targets with Shape / Gather / Mod / Div / Concat), so their op types
    need no kernel.
    """
    static = {t.name for t in model.graph.initializer}
    out: set[int] = set()
    for i, n in enumerate(model.graph.node):
        if n.domain not in ("", "ai.onnx") or n.op_type in NEVER_FOLD:
            continue
        if n.op_type in ("Constant", "Shape", "Size") or all(x in static for x in n.input if x):
            static.update(o for o in n.output if o)
            out.add(i)
    return out


def check_supported(
    model: onnx.ModelProto, supported: set[str], source: str = "model", skip: set[int] | None = None
) -> None:
    """Raise one error listing every unsupported op with its node names (nodes in ``skip`` aside)."""
    bad: dict[str, list[str]] = {}
    for i, n in enumerate(model.graph.node):
        if n.op_type not in supported and (skip is None or i not in skip):
            bad.setdefault(n.op_type, []).append(n.name or f"#{i}")
    if bad:
        parts = [
            f"{op} (nodes: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})" for op, names in bad.items()
        ]
        raise UnsupportedOpError(f"{source}: unsupported op(s): {'; '.join(parts)}. rctc cannot compile this model")


def _value_infos(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...] | None, np.dtype | None]]:
    out: dict[str, tuple[tuple[int, ...] | None, np.dtype | None]] = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
        shape = None
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shape = tuple(d.dim_value for d in tt.shape.dim)
        out[vi.name] = (shape, dtype)
    return out


def to_ir(
    model: onnx.ModelProto,
    source: str = "model",
    original_inits: set[str] | None = None,
    consts: dict[str, np.ndarray] | None = None,
    source_shapes: dict[str, tuple[int, ...]] | None = None,
) -> Graph:
    """Convert a normalised ONNX model into an IR Graph with params / buffers / consts marked.

    The constants are the model's initializers, or ``consts`` (from :func:`normalize_to_arrays`).
    A constant whose shape folding changed (``source_shapes``: name -> shape in the file) records
    the file's shape in ``Value.meta["source_shape"]``.
    """
    g = Graph(name=model.graph.name or "model")
    infos = _value_infos(model)
    if consts is None:
        consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    if original_inits is None:
        original_inits = set(consts)
    roles: dict[str, str] = {}
    # a weight read through a layout node (Transpose(W) kept by folding) takes the role of the
    # layout node's output: consumers are looked through layout nodes back to the constant
    layout_src = {n.output[0]: n.input[0] for n in model.graph.node
                  if n.op_type in LAYOUT_OPS and n.input and n.output}

    def origin(name: str) -> str:
        while name not in consts and name in layout_src:
            name = layout_src[name]
        return name

    for n in model.graph.node:
        for i, read in enumerate(n.input):
            name = origin(read) if n.op_type not in LAYOUT_OPS else read
            if name in consts and np.issubdtype(consts[name].dtype, np.floating):
                if i in BUFFER_SLOTS.get(n.op_type, ()):
                    roles[name] = "buffer"
                elif i in PARAM_SLOTS.get(n.op_type, ()) and roles.get(name) != "buffer":
                    arr = consts[name]
                    is_weight = n.op_type in ops.WEIGHTED_OPS
                    if is_weight or (name in original_inits and arr.size > 1):
                        roles[name] = "param"
    for name, arr in consts.items():
        kind = roles.get(name, "const")
        # not np.ascontiguousarray: it turns 0-d scalars into 1-d arrays
        data = arr if arr.flags.c_contiguous else np.array(arr, order="C")
        v = g.add_value(name, arr.shape, arr.dtype, kind, data)
        if v.name != name:
            raise RctcError(f"{source}: duplicate tensor name {name!r}")
        if source_shapes and name in source_shapes and tuple(source_shapes[name]) != tuple(arr.shape):
            v.meta["source_shape"] = [int(d) for d in source_shapes[name]]  # export restores it
    for vi in model.graph.input:
        shape, dtype = infos[vi.name]
        if shape is None or dtype is None:
            raise RctcError(f"{source}: input {vi.name!r} has no static shape/type after batch binding")
        g.add_input(vi.name, shape, dtype)
    for i, n in enumerate(model.graph.node):
        ins = []
        for name in n.input:
            if name == "":
                ins.append(None)
            elif name in g.values:
                ins.append(g.values[name])
            else:
                raise RctcError(f"{source}: node {n.name or n.op_type!r} reads {name!r}, which nothing defines")
        outs: list[tuple[str, tuple[int, ...] | None, np.dtype | None]] = []
        for j, name in enumerate(n.output):
            shape, dtype = infos.get(name, (None, None)) if name else ((), np.dtype(np.float32))
            if shape is None or dtype is None:
                raise RctcError(
                    f"{source}: shape inference gave no static shape for {name!r} ({n.op_type} "
                    f"{n.name or i!r}); export the model with static shapes"
                )
            outs.append((name or f"{n.name or n.op_type}_unused{j}", shape, dtype))
        node = g.add_node(n.op_type, ins, outs, attrs_from_proto(n.attribute), name=n.name or f"{n.op_type}_{i}")
        for (name, _, _), v in zip(outs, node.outputs):
            if v.name != name:
                raise RctcError(f"{source}: tensor {name!r} is defined twice")
    g.outputs = [g.value(o.name) for o in model.graph.output]
    g.meta["model_inputs"] = [v.name for v in g.inputs]
    g.meta["model_outputs"] = [v.name for v in g.outputs]
    g.remove_unused()
    g.verify()
    return g


def import_model(
    model: onnx.ModelProto | str | os.PathLike[str], batch_size: int = 1, supported: set[str] | None = None
) -> Graph:
    """Load (if a path), normalise and convert an ONNX model to the IR, batch dim bound to ``batch_size``."""
    source = str(model) if not isinstance(model, onnx.ModelProto) else (model.graph.name or "model")
    proto = load_model(model) if not isinstance(model, onnx.ModelProto) else model
    if supported is None:
        supported = set(ops.REGISTRY)
    # report everything before any work
    # (shape arithmetic folds once the batch is bound: only the ops that remain are checked after)
    check_supported(proto, supported | FOLDABLE_ONLY | REWRITTEN_AT_IMPORT, source, shape_arithmetic(proto))
    original_inits = {t.name for t in proto.graph.initializer}
    source_shapes: dict[str, tuple[int, ...]] = {}
    rnn_states: set[str] = set()
    norm, consts = normalize_to_arrays(proto, batch_size, source, source_shapes, rnn_states)
    original_inits -= rnn_states  # an RNN's initial state is a constant, not a parameter
    check_supported(norm, supported, source)
    g = to_ir(norm, source, original_inits, consts, source_shapes)
    g.meta["dynamic_batch"] = dynamic_batch(proto)
    if g.meta["dynamic_batch"] and any(n.op_type in ("Shape", "Size") for n in proto.graph.node):
        # Shape-derived Reshape targets hold the bound batch: normalise at a second batch size
        # to tell which entries depend on it
        norm2, consts2 = normalize_to_arrays(proto, batch_size + 1 if batch_size > 1 else 3, source)
        for name, free in batch_free_targets(norm, consts, norm2, consts2).items():
            if name in g.values:  # export writes this target: the exported model runs at any batch
                g.values[name].meta["batch_free"] = None if free is None else [int(d) for d in free]
    return g


__all__ = ["TARGET_OPSET", "import_model", "load_model", "normalize_to_arrays", "to_ir"]

"""ONNX frontend: load, check, normalise and convert an ONNX model into the rctc IR.

Steps: safe loading (external data must stay in the model's folder) -> unsupported-op check
-> ``onnx.checker`` -> old-IR clean-up (graph inputs that repeat initializer names) -> batch
binding -> ``onnx.version_converter`` to ``TARGET_OPSET`` -> constant folding
(``fold_in_place``: the constants leave the protobuf as numpy arrays) -> spec clean-ups the
converter / onnx's opset-18 shape inference need (scalar Dropout ratio, ceil-mode pools) ->
``onnx.shape_inference`` on a weight-less skeleton -> IR (``to_ir``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, helper, numpy_helper, shape_inference, version_converter

from rctc import ops
from rctc.constant_folding import FOLDABLE_ONLY, fold_in_place, shape_skeleton, static_shapes
from rctc.errors import RctcError, UnsupportedOpError
from rctc.ir import Graph
from rctc.onnx_attrs import attrs_from_proto

TARGET_OPSET = 18

# input slots that hold parameters / persistent buffers, per op type (from the op definitions;
# the rest of a node's float constants are consts)
PARAM_SLOTS = ops.PARAM_SLOTS
BUFFER_SLOTS = ops.BUFFER_SLOTS


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
REWRITTEN_AT_IMPORT = {"Gelu"}


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


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


def normalize_to_arrays(
    model: onnx.ModelProto, batch_size: int, source: str = "model"
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Check, bind the batch dim, convert opsets, fold constants and infer shapes.

    Returns the normalised model *without* initializers and name -> array of its constants
    (so the weights are not copied through protobuf again); ``model`` itself is not changed.
    """
    if batch_size < 1:
        raise RctcError(f"--batch-size must be >= 1, got {batch_size}")
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    model = model_copy
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise RctcError(f"{source}: invalid ONNX model: {first}") from exc
    _drop_initializer_inputs(model)
    _bind_batch(model, batch_size)
    custom = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        bad = [f"{n.domain}::{n.op_type} ({n.name or '?'})" for n in model.graph.node if n.domain in custom]
        raise UnsupportedOpError(f"{source}: unsupported custom-domain op(s): {', '.join(bad[:20])}")
    _decompose_gelu(model)
    if _opset(model) != TARGET_OPSET:
        try:
            model = version_converter.convert_version(model, TARGET_OPSET)
        except Exception as exc:
            raise RctcError(
                f"{source}: cannot convert opset {_opset(model)} to {TARGET_OPSET} ({str(exc).splitlines()[0]})"
            ) from exc
        # the converter keeps the IR version: an old model (IR 3/4) would claim opset 18 with an
        # IR version too old for it
        model.ir_version = max(model.ir_version, helper.find_min_ir_version_for(list(model.opset_import)))
    consts = fold_in_place(model)
    _fix_pool_ceil_mode(model, consts)
    _scalar_dropout_inputs(model, consts)
    try:  # on the weight-less skeleton: fast, and no 2 GB protobuf limit
        inferred = shape_inference.infer_shapes(
            shape_skeleton(model, consts), check_type=True, strict_mode=True, data_prop=True
        )
    except Exception as exc:
        raise RctcError(f"{source}: shape inference failed: {str(exc).strip().splitlines()[0]}") from exc
    for field in ("value_info", "output"):
        del getattr(model.graph, field)[:]
        getattr(model.graph, field).extend(getattr(inferred.graph, field))
    return model, consts


def _scalar_dropout_inputs(model: onnx.ModelProto, consts: dict[str, np.ndarray]) -> None:
    """Give Dropout the scalar ``ratio`` / ``training_mode`` the spec asks for.

    ``onnx.version_converter`` turns the opset < 12 ``ratio`` attribute into a one-element 1-D
    tensor; passes and kernels may rely on the spec's 0-d scalar.
    """
    for n in model.graph.node:
        if n.op_type != "Dropout":
            continue
        for i in (1, 2):
            name = n.input[i] if i < len(n.input) else ""
            arr = consts.get(name)
            if arr is None or arr.ndim == 0 or arr.size != 1:
                continue
            scalar = arr.reshape(())
            new = f"{name}_scalar"
            while new in consts and not (consts[new].shape == () and consts[new] == scalar):
                new += "_"
            consts[new] = scalar
            n.input[i] = new


def _fix_pool_ceil_mode(model: onnx.ModelProto, consts: dict[str, np.ndarray]) -> None:
    """Turn ``ceil_mode=1`` into ``ceil_mode=0`` on pools whose last ceil-mode window would start
    in the end padding.

    onnxruntime, PyTorch and rctc's kernels drop such a window (the output then has exactly the
    floor-mode size, so ``ceil_mode=0`` is the same computation), but onnx's shape inference for
    the opset-18 pools still counts it and would give the IR a shape the kernels do not produce.
    """
    pools = [n for n in model.graph.node if n.op_type in ("MaxPool", "AveragePool")]
    if not any(a.name == "ceil_mode" and a.i for n in pools for a in n.attribute):
        return
    from rctc.ops.geometry import out_size

    shapes = static_shapes(model, consts)
    for n in pools:
        attrs = attrs_from_proto(n.attribute)
        auto_pad = attrs.get("auto_pad", "NOTSET")
        if not attrs.get("ceil_mode") or auto_pad not in ("NOTSET", "VALID") or n.input[0] not in shapes:
            continue
        spatial = shapes[n.input[0]][2:]
        k = len(spatial)
        kernel = attrs.get("kernel_shape", [])
        if len(kernel) != k:
            continue  # the kernel reports the malformed node
        strides = attrs.get("strides", [1] * k)
        dilations = attrs.get("dilations", [1] * k)
        pads = attrs.get("pads", [0] * (2 * k)) if auto_pad == "NOTSET" else [0] * (2 * k)
        try:
            same = all(
                out_size(spatial[i], kernel[i], strides[i], dilations[i], pads[i], pads[k + i], True)
                == out_size(spatial[i], kernel[i], strides[i], dilations[i], pads[i], pads[k + i], False)
                for i in range(k)
            )
        except ValueError:
            continue
        if same:
            for a in n.attribute:
                if a.name == "ceil_mode":
                    a.i = 0


def check_supported(model: onnx.ModelProto, supported: set[str], source: str = "model") -> None:
    """Raise one error listing every unsupported op with its node names."""
    bad: dict[str, list[str]] = {}
    for i, n in enumerate(model.graph.node):
        if n.op_type not in supported:
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
) -> Graph:
    """Convert a normalised ONNX model into an IR Graph with params / buffers / consts marked.

    The constants are the model's initializers, or ``consts`` (from :func:`normalize_to_arrays`).
    """
    g = Graph(name=model.graph.name or "model")
    infos = _value_infos(model)
    if consts is None:
        consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    if original_inits is None:
        original_inits = set(consts)
    roles: dict[str, str] = {}
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name in consts and np.issubdtype(consts[name].dtype, np.floating):
                if i in BUFFER_SLOTS.get(n.op_type, ()):
                    roles[name] = "buffer"
                elif i in PARAM_SLOTS.get(n.op_type, ()) and roles.get(name) != "buffer":
                    arr = consts[name]
                    is_weight = n.op_type in ("Conv", "Gemm", "MatMul", "BatchNormalization",
                                              "LayerNormalization", "Gather")
                    if is_weight or (name in original_inits and arr.size > 1):
                        roles[name] = "param"
    for name, arr in consts.items():
        kind = roles.get(name, "const")
        # not np.ascontiguousarray: it turns 0-d scalars into 1-d arrays
        data = arr if arr.flags.c_contiguous else np.array(arr, order="C")
        v = g.add_value(name, arr.shape, arr.dtype, kind, data)
        if v.name != name:
            raise RctcError(f"{source}: duplicate tensor name {name!r}")
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
    check_supported(proto, supported | FOLDABLE_ONLY | REWRITTEN_AT_IMPORT, source)
    original_inits = {t.name for t in proto.graph.initializer}
    norm, consts = normalize_to_arrays(proto, batch_size, source)
    check_supported(norm, supported, source)
    return to_ir(norm, source, original_inits, consts)


__all__ = ["TARGET_OPSET", "import_model", "load_model", "normalize_to_arrays", "to_ir"]

"""Spec clean-ups of the ONNX frontend: what opset conversion, folding and rctc's semantics need
before shape inference (used by ``rctc.onnx_import.normalize_to_arrays``).

Each function takes a model that ``onnx.checker`` accepted (and, after folding, its constants as
name -> array), changes it in place or raises an ``RctcError`` of one line naming the node, and
leaves a model onnx's opset-18 shape inference and rctc's kernels read with the intended meaning:
opset 19-22 nodes read as 18, scalar Dropout ratios, Dropout training_mode a constant,
BatchNormalization in its inference form, ceil-mode pools whose last window onnx would count,
Upsample (opsets 7-9) as the Resize it means.
"""

from __future__ import annotations

import numpy as np
import onnx

from rctc.constant_folding import static_shapes
from rctc.errors import RctcError
from rctc.onnx_attrs import attrs_from_proto

TARGET_OPSET = 18


#: ops whose meaning changed after opset 18 in a way the attribute check below cannot see
_CHANGED_AFTER_18 = {"GroupNormalization": "opset 21 gives scale and bias one value per channel, not per group"}


def accept_newer_opset(model: onnx.ModelProto, source: str) -> None:
    """Read a model of an opset above 18 as opset 18, in place, where every node means the same.

    ``onnx.version_converter`` has no down-adapter for many opset 19-22 revisions that only
    widened type constraints (GlobalMaxPool 22, Conv 22, Reshape 21, ...). A node of such an op is
    the opset-18 op when it uses no attribute opset 18 lacks; its types are then checked against
    opset 18's constraints by the strict shape inference that follows (``check_type``). Any other
    node is refused by name.
    """
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 1)
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        what = f"{source}: {n.op_type} node {n.name or n.output[0]!r} (opset {opset})"
        try:
            newer = onnx.defs.get_schema(n.op_type, opset)
            old = onnx.defs.get_schema(n.op_type, TARGET_OPSET)
        except onnx.defs.SchemaError:
            raise RctcError(f"{what}: the op does not exist in opset {TARGET_OPSET}, which rctc compiles; "
                            "re-export with opset 18") from None
        if newer.since_version <= TARGET_OPSET:
            continue
        extra = sorted({a.name for a in n.attribute} - set(old.attributes))
        if n.op_type in _CHANGED_AFTER_18 or extra:
            why = _CHANGED_AFTER_18.get(n.op_type) or f"attribute(s) {', '.join(extra)} do not exist in opset 18"
            raise RctcError(f"{what}: cannot be read as opset {TARGET_OPSET} ({why}); re-export with opset 18")
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = TARGET_OPSET


def scalar_dropout_inputs(model: onnx.ModelProto, consts: dict[str, np.ndarray]) -> None:
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


def constant_dropout_modes(model: onnx.ModelProto, consts: dict[str, np.ndarray], source: str) -> None:
    """Refuse a Dropout whose ``training_mode`` is computed at run time instead of ignoring it.

    rctc owns the training / inference switch (Dropout drops in ``train`` and never in ``eval`` /
    ``predict`` / ``export``, whatever mode the file was exported in, as for BatchNormalization);
    a constant ``training_mode`` only records the exporter's mode, a run-time one cannot be honoured.
    """
    for n in model.graph.node:
        if n.op_type == "Dropout" and len(n.input) > 2 and n.input[2] and n.input[2] not in consts:
            raise RctcError(
                f"{source}: Dropout {n.name or n.output[0]!r} reads its training_mode from {n.input[2]!r}, "
                "computed at run time; rctc switches dropout itself (on in train, off in eval / predict): "
                "make training_mode a constant or drop that input"
            )


def inference_batchnorm(model: onnx.ModelProto, source: str) -> None:
    """BatchNormalization exported in training mode becomes its inference form, in place.

    A file exported with ``training=TrainingMode.TRAINING`` (``training_mode=1`` and the
    running-statistics outputs) would otherwise normalise with batch statistics in eval /
    predict / export too. rctc's own training form (``mark_trainable``) uses the batch
    statistics and updates the running ones; everything else uses the running statistics.
    """
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for n in model.graph.node:
        if n.op_type != "BatchNormalization":
            continue
        extra = [o for o in n.output[1:] if o]
        if any(o in read for o in extra):
            raise RctcError(
                f"{source}: BatchNormalization {n.name or n.output[0]!r}: the graph reads its running-statistics "
                "outputs; rctc updates the running statistics itself while training: re-export the model in "
                "eval mode (training=TrainingMode.EVAL)"
            )
        del n.output[1:]
        keep = [a for a in n.attribute if a.name != "training_mode"]
        del n.attribute[:]
        n.attribute.extend(keep)


def fix_pool_ceil_mode(model: onnx.ModelProto, consts: dict[str, np.ndarray]) -> None:
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


def upsample_outputs(model: onnx.ModelProto) -> set[str]:
    """Outputs of the deprecated ``Upsample`` nodes (opsets 7-9), read before the opset conversion."""
    return {n.output[0] for n in model.graph.node if n.op_type == "Upsample" and n.domain in ("", "ai.onnx")}


def upsample_as_resize(model: onnx.ModelProto, outputs: set[str]) -> None:
    """Give the ``Resize`` nodes the opset conversion made of ``Upsample`` nodes (producing
    ``outputs``) Upsample's meaning, in place: asymmetric coordinates and ``nearest`` reading
    ``floor(o / scale)``, as onnxruntime's Upsample (the converter's Resize-10 -> 11 step
    leaves the default half_pixel, which moves a linear Upsample by half a pixel)."""
    for n in model.graph.node:
        if n.op_type == "Upsample" and n.output[0] in outputs:
            raise RctcError(f"Upsample node {n.name or n.output[0]!r}: the opset conversion kept it; re-export "
                            "with Resize (opset 11 or later)")
        if n.op_type != "Resize" or n.output[0] not in outputs:
            continue
        keep = [a for a in n.attribute if a.name not in ("coordinate_transformation_mode", "nearest_mode")]
        del n.attribute[:]
        n.attribute.extend(keep)
        n.attribute.append(onnx.helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
        n.attribute.append(onnx.helper.make_attribute("nearest_mode", "floor"))


__all__ = ["TARGET_OPSET", "accept_newer_opset", "constant_dropout_modes", "fix_pool_ceil_mode",
           "inference_batchnorm", "scalar_dropout_inputs", "upsample_as_resize",
           "upsample_outputs"]

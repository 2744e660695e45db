"""Structural checks of an ONNX file a user gives rctc, before anything reads its tensors.

Needs: the ``ModelProto`` as parsed (external data not loaded) and the file's path. Leaves:
either nothing (the model is safe to hand to ``onnx`` and numpy) or one ``RctcError`` naming the
tensor / node / field and what is wrong. What it guarantees afterwards:

* every string in the protobuf is valid UTF-8 (protobuf hands invalid ones back as ``bytes``);
* the graph declares at least one output;
* every tensor (initializers, ``Constant`` values, attributes, subgraphs) has a known data type,
  non-negative dims, and exactly the bytes / elements its dims declare, so no reshape fails and
  nothing is allocated from a size the file cannot back;
* every external-data reference is a relative location without NUL bytes inside the model's
  folder (symlinks resolved), names an existing regular file, and has non-negative integer
  ``offset`` / ``length`` that stay within that file and match the tensor's declared size.

``check_batch_size`` bounds the tensors a ``--batch-size`` would create (named in the message).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from onnx import TensorProto, helper

from rctc.errors import RctcError

MAX_TENSOR_BYTES = 2**31  # one activation larger than 2 GiB does not fit any edge device

# typed-data field of a TensorProto -> values it holds per element (complex types hold two)
_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
_PACKED_4BIT = {getattr(TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(TensorProto, n)}
_COMPLEX = {TensorProto.COMPLEX64, TensorProto.COMPLEX128}


def _label(msg: Message) -> str:
    name = getattr(msg, "name", "")
    kind = type(msg).__name__.replace("Proto", "").lower()
    return f"{kind} {name!r}" if isinstance(name, str) and name else kind


def _repeated(field: FieldDescriptor) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 6
        return bool(field.is_repeated)
    return field.label == FieldDescriptor.LABEL_REPEATED


def _check_strings(msg: Message, where: str, source: str) -> None:
    """Every string field of ``msg`` and its sub-messages decoded as UTF-8."""
    here = _label(msg) if hasattr(msg, "name") else where
    for field, value in msg.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            subs = value if _repeated(field) else [value]
            for sub in subs:
                _check_strings(sub, here, source)
        elif field.type == FieldDescriptor.TYPE_STRING:
            for s in value if _repeated(field) else [value]:
                if isinstance(s, bytes):
                    raise RctcError(f"{source}: {here}: field {field.name!r} holds {s[:40]!r}, which is not valid "
                                    "UTF-8; the file is damaged or was written by a broken exporter")


def _tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    """Every tensor of ``graph``: initializers and attribute tensors, subgraphs included."""
    yield from graph.initializer
    for sp in graph.sparse_initializer:
        yield sp.values
        yield sp.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _declared_bytes(t: TensorProto, source: str) -> int | None:
    """Bytes the tensor's dims and type declare (None for strings, whose size is not fixed)."""
    if any(d < 0 for d in t.dims):
        raise RctcError(f"{source}: tensor {t.name!r} has a negative dimension {list(t.dims)}")
    if t.data_type == TensorProto.STRING:
        return None
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        raise RctcError(f"{source}: tensor {t.name!r} has unknown data type {t.data_type}") from None
    n = int(np.prod(t.dims, dtype=object)) if len(t.dims) else 1
    return (n + 1) // 2 if t.data_type in _PACKED_4BIT else n * itemsize


def _check_inline(t: TensorProto, declared: int | None, source: str) -> None:
    n = int(np.prod(t.dims, dtype=object)) if len(t.dims) else 1
    if t.HasField("raw_data"):
        if declared is not None and len(t.raw_data) != declared:
            raise RctcError(f"{source}: tensor {t.name!r} declares dims {list(t.dims)} ({declared} bytes) but holds "
                            f"{len(t.raw_data)} bytes of data; the file is damaged")
        return
    held = [len(getattr(t, f)) for f in _TYPED_FIELDS if len(getattr(t, f))]
    count = sum(held)
    if t.data_type in _COMPLEX:
        count //= 2
    if t.data_type in _PACKED_4BIT:
        n = (n + 1) // 2
    if count != n:
        raise RctcError(f"{source}: tensor {t.name!r} declares dims {list(t.dims)} ({n} values) but holds {count}; "
                        "the file is damaged")


def _external_info(t: TensorProto, source: str) -> dict[str, str]:
    info = {e.key: e.value for e in t.external_data}
    for key in ("offset", "length"):
        if key in info and not (info[key].isascii() and info[key].isdigit()):
            raise RctcError(f"{source}: tensor {t.name!r}: external data {key} {info[key]!r} is not a non-negative "
                            "integer; the file is damaged")
    if not info.get("location"):
        raise RctcError(f"{source}: tensor {t.name!r} uses external data but names no location; the file is damaged")
    return info


def _check_external(t: TensorProto, declared: int | None, base: Path, source: str) -> None:
    info = _external_info(t, source)
    loc = info["location"]
    if "\0" in loc:
        raise RctcError(f"{source}: tensor {t.name!r}: external data location {loc!r} holds a NUL byte; "
                        "the file is damaged")
    target = (base / loc).resolve()
    if os.path.isabs(loc) or not target.is_relative_to(base):
        raise RctcError(f"{source}: tensor {t.name!r} points to external data {loc!r} outside the model's folder; "
                        "refusing to read it (move the data file next to the model)")
    if not target.is_file():
        raise RctcError(f"{source}: external data file {loc!r} for {t.name!r} is missing or not a file")
    size = target.stat().st_size
    offset = int(info.get("offset", "0"))
    length = int(info["length"]) if "length" in info else size - offset
    if offset + length > size or length < 0:
        raise RctcError(f"{source}: tensor {t.name!r}: external data offset {offset} + length {max(length, 0)} runs "
                        f"past the end of {loc!r} ({size} bytes); is the data file complete?")
    if declared is not None and length != declared:
        raise RctcError(f"{source}: tensor {t.name!r} declares dims {list(t.dims)} ({declared} bytes) but its "
                        f"external data is {length} bytes; the file is damaged")


def check_model_file(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Refuse a parsed ONNX file that the rest of the frontend cannot read safely (module docstring)."""
    source = str(path)
    _check_strings(model, "model", source)
    if not model.HasField("graph") or len(model.graph.node) == 0:
        return  # the loader says "not an ONNX model"
    if len(model.graph.output) == 0:
        raise RctcError(f"{source}: the graph declares no outputs; re-export the model with its outputs")
    base = Path(path).resolve().parent
    for t in _tensors(model.graph):
        declared = _declared_bytes(t, source)
        if t.data_location == TensorProto.EXTERNAL:
            _check_external(t, declared, base, source)
        else:
            _check_inline(t, declared, source)


def check_batch_size(values: Any, batch_size: int, source: str) -> None:
    """No tensor of the imported graph (``values``: name -> IR Value) exceeds ``MAX_TENSOR_BYTES`` at
    ``batch_size``; the message names the largest offender."""
    worst = None
    for v in values.values():
        if v.shape is None or v.dtype is None or any(not isinstance(d, int) for d in v.shape):
            continue
        nbytes = int(np.prod(v.shape, dtype=object)) * np.dtype(v.dtype).itemsize if len(v.shape) else 0
        if nbytes > MAX_TENSOR_BYTES and (worst is None or nbytes > worst[1]):
            worst = (v.name, nbytes, list(v.shape))
    if worst is not None:
        name, nbytes, shape = worst
        raise RctcError(f"{source}: at --batch-size {batch_size} tensor {name!r} would be {shape} "
                        f"({nbytes / 2**30:.1f} GiB, more than {MAX_TENSOR_BYTES / 2**30:.0f} GiB); use a smaller "
                        "--batch-size")

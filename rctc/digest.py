"""The state digest: one CRC-32 over the training state, the same on every backend and on the device.

Defined once, here; ``native/csrc/support/digest.c`` computes the same value in C (tested) and
``docs/digest.md`` states the format. The digest is CRC-32 (IEEE 802.3, reflected polynomial
0xEDB88320, initial value and final xor 0xFFFFFFFF: exactly ``zlib.crc32``) over the
concatenation of one record per state tensor, in ascending order of the name's UTF-8 bytes::

    name      UTF-8 bytes, then one NUL byte (a name is non-empty and holds no NUL)
    dtype     u32 LE: the ONNX TensorProto.DataType code (DTYPE_CODES)
    ndim      u32 LE
    dims      ndim x u32 LE, outermost first
    exponent  i32 LE: the tensor's power-of-two exponent, 0 for a tensor without one
    data      prod(dims) elements, C order, each little-endian (bool: one byte, 0 or 1;
              floats: their IEEE-754 bits, so -0.0 and 0.0 differ)

Records are self-delimiting (the NUL ends the name, the dims fix the data length), so no two
different states give the same byte string. Which tensors make up "the state" (parameters,
slots, optimizer state, step counter) is the caller's choice; :func:`graph_state_records`
is the one choice ``rctc digest``, every backend and the device harness make.

Needs: numpy, zlib. Leaves: pure functions; inputs are never modified.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from rctc.analysis.arena import host_state

if TYPE_CHECKING:
    from rctc.ir import Graph

__all__ = ["DTYPE_CODES", "STATE_KINDS", "graph_state_records", "record_header", "state_digest", "state_crc32"]

#: numpy dtype -> ONNX ``TensorProto.DataType`` code (the dtype field of a record)
DTYPE_CODES: dict[np.dtype, int] = {
    np.dtype(np.float32): 1,
    np.dtype(np.uint8): 2,
    np.dtype(np.int8): 3,
    np.dtype(np.uint16): 4,
    np.dtype(np.int16): 5,
    np.dtype(np.int32): 6,
    np.dtype(np.int64): 7,
    np.dtype(np.bool_): 9,
    np.dtype(np.float16): 10,
    np.dtype(np.float64): 11,
    np.dtype(np.uint32): 12,
    np.dtype(np.uint64): 13,
}

_U32 = 1 << 32
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1

Record = tuple[str, np.ndarray, "int | None"]

#: the Value kinds whose tensors make up a compiled model's training state (``rctc digest``)
STATE_KINDS = ("param", "buffer")


def graph_state_records(graph: Graph) -> list[Record]:
    """The records of a graph's training state: every parameter and buffer Value (weights as
    integers, their exponent / bits slots, optimizer state, running statistics, the maxima of
    the quantisers inside the step), each with exponent field 0, since exponents are state
    tensors of their own; left out: the running range of the input quantiser
    (``rctc.analysis.arena.host_state``), which belongs to the host's data pipeline (a device
    receives quantised samples and never holds it)."""
    host = host_state(graph)
    return [(v.name, np.asarray(v.data), 0) for v in graph.values.values()
            if v.kind in STATE_KINDS and v.data is not None and v.name not in host]


def _name_bytes(name: object) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"a state tensor's name must be a str, got {type(name).__name__}")
    if not name or "\x00" in name:
        raise ValueError(f"a state tensor's name must be non-empty and hold no NUL, got {name!r}")
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"state tensor name {name!r} is not encodable as UTF-8") from None


def _le_array(name: str, array: np.ndarray) -> np.ndarray:
    """``array`` as a C-contiguous little-endian array of a digest dtype (a view when it is one)."""
    a = np.asarray(array)
    native = a.dtype.newbyteorder("=")
    if native not in DTYPE_CODES:
        raise ValueError(f"state tensor {name!r} has dtype {a.dtype}, which the digest does not define")
    return np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")  # keeps 0-d arrays 0-d


def _exponent(name: str, exponent: object) -> int:
    if exponent is None:
        return 0
    if isinstance(exponent, bool):
        raise TypeError(f"state tensor {name!r}: the exponent must be an integer, not bool")
    e = operator.index(exponent)
    if not _I32_MIN <= e <= _I32_MAX:
        raise ValueError(f"state tensor {name!r}: exponent {e} does not fit in int32")
    return e


def _header(name_b: bytes, name: str, a: np.ndarray, exponent: object) -> bytes:
    for d in a.shape:
        if d >= _U32:
            raise ValueError(f"state tensor {name!r}: dimension {d} does not fit in u32")
    code = DTYPE_CODES[a.dtype.newbyteorder("=")]
    fields = [code, a.ndim, *a.shape]
    return (
        name_b
        + b"\x00"
        + np.asarray(fields, dtype="<u4").tobytes()
        + np.asarray([_exponent(name, exponent)], dtype="<i4").tobytes()
    )


def record_header(name: str, array: np.ndarray, exponent: int | None = 0) -> bytes:
    """The exact bytes of one record before its data: name, NUL, dtype, ndim, dims, exponent."""
    a = np.asarray(array)
    return _header(_name_bytes(name), name, _le_array(name, a), exponent)


def state_crc32(records: Iterable[Record]) -> int:
    """CRC-32 (``zlib.crc32``) of the records ``(name, array, exponent)`` in the stated order.

    Records may come in any order (they are sorted by the UTF-8 bytes of their names); a name
    given twice is refused with ValueError. ``exponent`` None means the tensor has none (0).
    """
    items: dict[bytes, tuple[str, np.ndarray, object]] = {}
    for name, array, exponent in records:
        key = _name_bytes(name)
        if key in items:
            raise ValueError(f"state tensor {name!r} is given twice")
        items[key] = (name, _le_array(name, array), exponent)
    crc = 0
    for key in sorted(items):
        name, a, exponent = items[key]
        crc = zlib.crc32(_header(key, name, a, exponent), crc)
        if a.size:
            crc = zlib.crc32(a.reshape(-1).view(np.uint8), crc)
    return crc


def state_digest(records: Iterable[Record]) -> str:
    """The state digest: :func:`state_crc32` as 8 lowercase hex digits."""
    return f"{state_crc32(records):08x}"

"""rctc.digest: the record bytes against a struct-built reference, the digest against zlib over
those bytes, sensitivity to every byte / exponent / name / shape / dtype, the docs' example."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from rctc.digest import DTYPE_CODES, record_header, state_crc32, state_digest

DOC = Path(__file__).resolve().parents[1] / "docs" / "digest.md"


STRUCT_CODES = {"i": "bhiq", "u": "BHIQ", "f": "?efd"}


def struct_code(dt: np.dtype) -> str:
    """The struct format letter of a numpy dtype, chosen by kind and size (standard sizes)."""
    if dt.kind == "b":
        return "?"
    return STRUCT_CODES[dt.kind][{1: 0, 2: 1, 4: 2, 8: 3}[dt.itemsize]]


def reference_bytes(records) -> bytes:
    """The documented byte string, built with struct (independent of rctc.digest's code)."""
    out = b""
    for name, a, e in sorted(records, key=lambda r: r[0].encode("utf-8")):
        a = np.asarray(a)
        code = helper.np_dtype_to_tensor_dtype(a.dtype)
        out += name.encode("utf-8") + b"\0"
        out += struct.pack(f"<II{a.ndim}Ii", code, a.ndim, *a.shape, 0 if e is None else e)
        out += b"".join(struct.pack("<" + struct_code(a.dtype), v) for v in a.reshape(-1).tolist())
    return out


def sample_records(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [
        ("conv1.weight", rng.integers(-128, 128, size=(4, 3, 3, 3)).astype(np.int8), -7),
        ("conv1.bias", rng.integers(-(1 << 31), 1 << 31, size=(4,)).astype(np.int32), -15),
        ("fc.weight", rng.integers(-(1 << 15), 1 << 15, size=(10, 6)).astype(np.int16), 3),
        ("slot.bits", np.array([8, 4, 16], dtype=np.uint8), None),
        ("step", np.array(12345, dtype=np.int64), None),
        ("momentum", rng.standard_normal((2, 5)).astype(np.float32), None),
        ("mask", rng.random(7) < 0.5, None),
        ("lr", np.array([0.5], dtype=np.float64), None),
        ("h", rng.standard_normal(3).astype(np.float16), None),
        ("u32", rng.integers(0, 1 << 32, size=3).astype(np.uint32), -1),
        ("u64", rng.integers(0, 1 << 63, size=2).astype(np.uint64), 0),
        ("u16", np.array([[1, 65535]], dtype=np.uint16), 2),
        ("empty", np.zeros((0, 3), np.int8), -3),
    ]


def test_dtype_codes_are_onnx_tensorproto_codes():
    for dt, code in DTYPE_CODES.items():
        assert helper.np_dtype_to_tensor_dtype(dt) == code
    assert DTYPE_CODES[np.dtype(np.int8)] == onnx.TensorProto.INT8


def test_record_header_bytes():
    a = np.zeros((2, 3), np.int8)
    assert record_header("conv1.weight", a, -7) == b"conv1.weight\0" + struct.pack("<IIIIi", 3, 2, 2, 3, -7)
    assert record_header("s", np.int64(5), None) == b"s\0" + struct.pack("<IIi", 7, 0, 0)
    assert record_header("é", np.zeros(1, np.float32)) == "é".encode() + b"\0" + struct.pack("<IIIi", 1, 1, 1, 0)


def test_digest_is_crc32_of_the_documented_bytes():
    records = sample_records()
    expected = zlib.crc32(reference_bytes(records))
    assert state_crc32(records) == expected
    assert state_digest(records) == f"{expected:08x}"
    assert state_digest(records[::-1]) == state_digest(records)  # input order does not matter


def test_names_sorted_by_utf8_bytes():
    records = [("b", np.zeros(1, np.int8), 0), ("a", np.ones(1, np.int8), 0), ("Ä", np.ones(2, np.int8), 0)]
    data = b"".join(
        record_header(n, a, e) + a.tobytes() for n, a, e in sorted(records, key=lambda r: r[0].encode("utf-8"))
    )
    assert state_crc32(records) == zlib.crc32(data)


def test_byte_order_and_layout_of_the_input_do_not_matter():
    records = sample_records(3)
    changed = []
    for n, a, e in records:
        a = np.asarray(a)
        if a.dtype.itemsize > 1:
            a = a.astype(a.dtype.newbyteorder(">"))  # same values, big-endian storage
        if a.ndim == 2:
            a = np.asfortranarray(a)
        changed.append((n, a, e))
    assert state_digest(changed) == state_digest(records)


def test_every_single_byte_change_is_seen():
    records = sample_records(1)
    base = state_digest(records)
    for i, (name, a, e) in enumerate(records):
        raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        for j in range(raw.size):
            flipped = raw.copy()
            flipped[j] ^= np.uint8(1 << (j % 8))
            b = flipped.view(np.asarray(a).dtype).reshape(np.shape(a))
            assert state_digest([*records[:i], (name, b, e), *records[i + 1 :]]) != base, (name, j)


def test_exponent_name_shape_and_dtype_changes_are_seen():
    records = sample_records(2)
    base = state_digest(records)
    name, a, e = records[0]

    def replaced(rec):
        return state_digest([rec, *records[1:]])

    assert replaced((name, a, e + 1)) != base
    assert replaced((name, a, -e)) != base
    assert replaced((name + "x", a, e)) != base
    assert replaced(("conv1.weighT", a, e)) != base
    assert replaced((name, a.reshape(4, 27), e)) != base  # same bytes, other shape
    assert replaced((name, a.view(np.uint8), e)) != base  # same bytes, other dtype
    assert state_digest(records[1:]) != base  # a tensor left out
    # None and 0 are the same exponent (documented)
    n2, a2, _ = records[3]
    assert state_digest([*records[:3], (n2, a2, 0), *records[4:]]) == base


def test_docs_worked_example():
    w = np.array([[1, -2, 3], [-4, 5, -6]], np.int8)
    b = np.array([100, -200], np.int32)
    text = DOC.read_text()
    digest = state_digest([("fc.weight", w, -7), ("fc.bias", b, -12)])
    assert f"its digest is `{digest}`" in text
    for header in (record_header("fc.bias", b, -12), record_header("fc.weight", w, -7)):
        assert header.hex(" ") in text


@pytest.mark.parametrize(
    "records,exc",
    [
        ([("a", np.zeros(1, np.int8), 0), ("a", np.zeros(1, np.int8), 0)], ValueError),  # twice
        ([("", np.zeros(1, np.int8), 0)], ValueError),
        ([("a\0b", np.zeros(1, np.int8), 0)], ValueError),
        ([("\ud800", np.zeros(1, np.int8), 0)], ValueError),  # not UTF-8 encodable
        ([(b"a", np.zeros(1, np.int8), 0)], TypeError),
        ([("a", np.zeros(1, np.complex64), 0)], ValueError),
        ([("a", np.array(["x"]), 0)], ValueError),
        ([("a", np.zeros(1, np.int8), 1 << 31)], ValueError),
        ([("a", np.zeros(1, np.int8), -(1 << 31) - 1)], ValueError),
        ([("a", np.zeros(1, np.int8), 1.0)], TypeError),
    ],
)
def test_refuses_bad_records(records, exc):
    with pytest.raises(exc):
        state_digest(records)


def test_empty_state():
    assert state_digest([]) == "00000000"  # the CRC of no bytes

"""native/csrc/support/digest.c: CRC-32 equals zlib's, and a digest built record by record in C
equals rctc.digest.state_digest for random records of every dtype."""

from __future__ import annotations

import ctypes
import zlib

import numpy as np
import pytest
from cshared import CSRC, arm_compile_objects, build_shared, compiler, undefined_symbols

from rctc.digest import DTYPE_CODES, state_crc32, state_digest

DIGEST_C = CSRC / "support" / "digest.c"
U32P = ctypes.POINTER(ctypes.c_uint32)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if compiler() is None:
        pytest.skip("no C compiler (set CC or install cc): the C digest cannot be built")
    so = build_shared([DIGEST_C], tmp_path_factory.mktemp("digest_c"), "rctc_digest")
    so.rctc_crc32.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]
    so.rctc_crc32.restype = ctypes.c_uint32
    so.rctc_digest_dtype_size.argtypes = [ctypes.c_uint32]
    so.rctc_digest_dtype_size.restype = ctypes.c_size_t
    so.rctc_digest_record.argtypes = [
        U32P,
        ctypes.c_char_p,
        ctypes.c_uint32,
        ctypes.c_uint32,
        U32P,
        ctypes.c_int32,
        ctypes.c_void_p,
    ]
    so.rctc_digest_record.restype = ctypes.c_int
    so.rctc_digest_hex.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    so.rctc_digest_hex.restype = None
    return so


def test_crc32_equals_zlib(lib):
    rng = np.random.default_rng(1)
    for n in [0, 1, 2, 3, 7, 64, 255, 1000, 4099]:
        data = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        assert lib.rctc_crc32(0, data, n) == zlib.crc32(data)
        cut = n // 3  # incremental, in zlib's convention
        assert lib.rctc_crc32(lib.rctc_crc32(0, data[:cut], cut), data[cut:], n - cut) == zlib.crc32(data)
    assert lib.rctc_crc32(0, b"123456789", 9) == 0xCBF43926  # the CRC-32/ISO-HDLC check value


def test_dtype_sizes(lib):
    for dt, code in DTYPE_CODES.items():
        assert lib.rctc_digest_dtype_size(code) == dt.itemsize
    for code in [0, 8, 14, 16, 0xFFFFFFFF]:
        assert lib.rctc_digest_dtype_size(code) == 0


def c_record(lib, crc: int, name: str, a: np.ndarray, exponent: int) -> int:
    a = np.asarray(a, order="C")
    assert a.dtype.isnative
    dims = np.array(a.shape, dtype=np.uint32)
    c = ctypes.c_uint32(crc)
    rc = lib.rctc_digest_record(
        ctypes.byref(c),
        name.encode("utf-8"),
        DTYPE_CODES[a.dtype],
        a.ndim,
        dims.ctypes.data_as(U32P),
        exponent,
        a.ctypes.data if a.size else None,
    )
    assert rc == 0
    return c.value


def random_array(rng: np.random.Generator, dt: np.dtype) -> np.ndarray:
    shape = tuple(int(d) for d in rng.integers(0, 5, size=int(rng.integers(0, 4))))  # () included
    if rng.random() < 0.15:
        shape = (3, 0, 2)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
    if dt == np.bool_:
        raw &= 1
    return raw.view(dt).reshape(shape)  # every bit pattern, NaNs and -0.0 included


def test_c_digest_equals_python_on_random_records(lib):
    rng = np.random.default_rng(17)
    for trial in range(25):
        records = []
        for i, dt in enumerate(DTYPE_CODES):
            if rng.random() < 0.7:
                name = f"{['w', 'é', 'b', 'slot'][i % 4]}{trial}.{i}"
                records.append((name, random_array(rng, dt), int(rng.integers(-(1 << 31), 1 << 31))))
        crc = 0
        for name, a, e in sorted(records, key=lambda r: r[0].encode("utf-8")):
            crc = c_record(lib, crc, name, a, e)
        assert crc == state_crc32(records)
        buf = ctypes.create_string_buffer(9)
        lib.rctc_digest_hex(crc, buf)
        assert buf.value.decode() == state_digest(records)


def test_c_record_refuses_bad_input(lib):
    dims = np.array([2], dtype=np.uint32)
    data = np.zeros(2, np.int8)
    c = ctypes.c_uint32(123)

    def call(name, dtype, ndim=1, d=dims, p=data.ctypes.data):
        return lib.rctc_digest_record(
            ctypes.byref(c), name, dtype, ndim, d.ctypes.data_as(U32P) if d is not None else None, 0, p
        )

    assert call(b"x", 8) == -1  # no such dtype code
    assert call(b"", 3) == -1  # empty name
    assert call(None, 3) == -1
    assert call(b"x", 3, d=None) == -1
    assert call(b"x", 3, p=None) == -1
    assert c.value == 123  # untouched by a refused record
    assert call(b"x", 3) == 0 and c.value != 123


def test_builds_for_cortex_m4_without_libc(tmp_path):
    objs = arm_compile_objects([DIGEST_C], tmp_path)
    if objs is None:
        pytest.skip("arm-none-eabi-gcc is not installed (apt-get install gcc-arm-none-eabi)")
    assert undefined_symbols(objs[0]) == []


def test_c_digest_of_a_trained_models_state_equals_rctc_digest(lib):
    """The state ``rctc digest`` covers, fed record by record to the C digest, gives the same hex."""
    import rctc
    from rctc.data import load_data
    from rctc.digest import graph_state_records
    from rctc.models import path as model_path

    m = rctc.compile(model_path("mlp"), mode="rct", batch_size=8)
    ds = load_data("digits:train")
    m.train(ds.x[:16], ds.y[:16], steps=2)
    records = graph_state_records(m.graph)
    assert any(a.dtype.kind == "i" for _, a, _ in records)  # the integer weights are in it
    crc = 0
    for name, a, e in sorted(records, key=lambda r: r[0].encode("utf-8")):
        crc = c_record(lib, crc, name, np.array(a, order="C"), e)  # (ascontiguousarray makes 0-d 1-d)
    buf = ctypes.create_string_buffer(9)
    lib.rctc_digest_hex(crc, buf)
    assert buf.value.decode() == m.digest()

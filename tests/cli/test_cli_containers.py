"""Corrupt .npz containers (data and checkpoints): refused as corrupt, sizes checked before allocating."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rctc.errors import CorruptFileError
from rctc.npz import read_npz


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    d = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(d).to_bytes(2, "little") + d.encode()


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _good(work: Path) -> bytes:
    return (work / "data.npz").read_bytes()


def _flip(b: bytes, at: int) -> bytes:
    out = bytearray(b)
    out[at] ^= 0x5A
    return bytes(out)


CASES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "bad CRC": (lambda b: _flip(b, b.find(b"\x93NUMPY") + 300), "Bad CRC-32"),
    "truncated in a member": (lambda b: b[: b.find(b"\x93NUMPY") + 500], "the file is corrupt"),
    "truncated directory": (lambda b: b[:-10], "the file is corrupt"),
    "not a zip": (lambda b: b"hello, not an archive", "not a readable .npz file"),
    "empty file": (lambda b: b"", "not a readable .npz file"),
    "huge declared array": (lambda b: _zip({"x.npy": _npy_header((10**11, 64)) + b"\0" * 64}),
                            "declares shape [100000000000, 64] float32 (25600000000000 bytes) but holds 64"),
    "negative dimension": (lambda b: _zip({"x.npy": _npy_header((-5, 64)) + b"\0" * 64}), "the file is corrupt"),
    "short array": (lambda b: _zip({"x.npy": _npy_header((12, 64)) + b"\0" * 100}), "but holds 100"),
    "object dtype": (lambda b: _zip({"x.npy": _npy_header((12, 64), "|O") + b"\0" * 64}), "no pickle"),
    "unknown dtype": (lambda b: _zip({"x.npy": _npy_header((12, 64), "<q9") + b"\0" * 64}), "the file is corrupt"),
    "garbage header": (lambda b: _zip({"x.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': 3}    \n"}),
                       "the file is corrupt"),
    "a single .npy": (lambda b: _npy_header((12, 64)) + b"\0" * (12 * 64 * 4), "a single array (.npy)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_data_npz(case: str, work: Path, refused: Callable) -> None:
    mutate, needle = CASES[case]
    (work / "bad.npz").write_bytes(mutate(_good(work)))
    line = refused(work, ["train", work / "mlp.rct", "--data", work / "bad.npz", "-o", work / "t.rct"], needle)
    assert str(work / "bad.npz") in line


def test_zip_directory_declaring_more_than_the_file_holds(tmp_path: Path) -> None:
    """A deflated member whose directory entry claims 10 TB: refused from the declared size."""
    raw = _zip({"x.npy": _npy_header((4,)) + b"\0" * 16}, zipfile.ZIP_DEFLATED)
    at = raw.rfind(b"PK\x01\x02")  # central directory entry: uncompressed size at offset 24
    bad = raw[: at + 24] + (10**13 % 2**32).to_bytes(4, "little") + raw[at + 28:]
    (tmp_path / "d.npz").write_bytes(bad)
    with pytest.raises(CorruptFileError, match="the file is corrupt"):
        read_npz(tmp_path / "d.npz")


def test_valid_archives_round_trip(tmp_path: Path) -> None:
    """Stored, deflated and Fortran-ordered arrays read back equal to numpy's own loader."""
    rng = np.random.default_rng(2)
    arrays = {"a": rng.random((3, 5)), "b": np.asfortranarray(rng.integers(0, 9, (4, 6))),
              "c": np.arange(7, dtype="<u2")}
    for save in (np.savez, np.savez_compressed):
        save(tmp_path / "d.npz", **arrays)
        names, got = read_npz(tmp_path / "d.npz")
        assert sorted(names) == ["a", "b", "c"]
        with np.load(tmp_path / "d.npz") as ref:
            for k in arrays:
                assert got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k])


@pytest.mark.parametrize("case", ["bad CRC", "truncated in a member", "huge declared array", "not a zip"])
def test_corrupt_checkpoint_on_resume(case: str, work: Path, run: Callable, contract: Callable,
                                      refused: Callable) -> None:
    out = work / "t.rct"
    args = ["train", work / "mlp.rct", "--data", work / "data.npz", "-o", out, "--steps", "2",
            "--checkpoint-every", "1"]
    contract(run(args), allowed=(0,))
    ckpt = work / "t.rct.ckpt"
    for extra in (work / "t.rct.ckpt.prev",):
        extra.unlink(missing_ok=True)
    mutate, _ = CASES[case]
    ckpt.write_bytes(mutate(ckpt.read_bytes()))
    refused(work, [*args, "--resume"], "checkpoint" if case == "not a zip" else "corrupt")

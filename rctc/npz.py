"""Reading ``.npz`` archives without trusting them: no pickle, every size checked before allocating.

Needs: a path to what claims to be an ``.npz`` (``numpy.savez`` / ``savez_compressed``). Leaves:
the requested arrays, or a ``CorruptFileError`` naming the file and the member. Invariant: an
array is allocated only after its ``.npy`` header's declared size equals the member's size in the
zip directory, and that size is one the archive can really hold (stored: at most the archive's
bytes; deflated: at most deflate's maximum ratio times the compressed bytes); reading to the end
of a member makes ``zipfile`` check its CRC.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from rctc.errors import CorruptFileError

NPY_MAGIC = b"\x93NUMPY"
MAX_DEFLATE_RATIO = 1032  # deflate cannot compress better than about 1032:1
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, RuntimeError, NotImplementedError,
               SyntaxError, TypeError)


def _declared_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * dtype.itemsize


def _check_member(path: Path, info: zipfile.ZipInfo, archive_bytes: int) -> None:
    """The zip directory's sizes for ``info`` are ones the archive can hold."""
    if info.compress_type == zipfile.ZIP_STORED:
        ok = info.file_size == info.compress_size <= archive_bytes
    else:
        ok = info.compress_size <= archive_bytes and info.file_size <= info.compress_size * MAX_DEFLATE_RATIO + 65536
    if not ok:
        raise CorruptFileError(f"{path}: member {info.filename!r} declares {info.file_size} bytes, more than the "
                               f"{archive_bytes}-byte file can hold; the file is corrupt")


def _read_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise CorruptFileError(f"{path}: member {info.filename!r} has .npy format {version}, which rctc does "
                                   "not read; save the arrays with numpy.savez")
        if dtype.hasobject:
            raise CorruptFileError(f"{path}: array {info.filename!r} holds Python objects, which rctc does not load "
                                   "(no pickle); save plain numeric arrays")
        if any(int(d) < 0 for d in shape):
            raise CorruptFileError(f"{path}: member {info.filename!r} declares a negative dimension {list(shape)}; "
                                   "the file is corrupt")
        declared = _declared_bytes(shape, dtype)
        if f.tell() + declared != info.file_size:
            raise CorruptFileError(f"{path}: member {info.filename!r} declares shape {list(shape)} {dtype} "
                                   f"({declared} bytes) but holds {info.file_size - f.tell()}; the file is corrupt")
        data = f.read(declared + 1)  # one byte more: reaching the end makes zipfile check the CRC
    if len(data) != declared:
        raise CorruptFileError(f"{path}: member {info.filename!r} is truncated; the file is corrupt")
    arr = np.frombuffer(data, dtype=dtype).copy()
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def _open_infos(path: Path) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    with open(path, "rb") as fh:
        if fh.read(len(NPY_MAGIC)) == NPY_MAGIC:
            raise CorruptFileError(f"{path}: a single array (.npy), not an .npz archive; save with "
                                   "numpy.savez(path, x=..., y=...)")
    try:
        zf = zipfile.ZipFile(path)
    except READ_ERRORS as exc:
        raise CorruptFileError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}); the file is corrupt "
                               "or not an .npz; save arrays with numpy.savez") from exc
    infos = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i for i in zf.infolist()}
    return zf, infos


def read_npz(path: str | os.PathLike[str], names: list[str] | None = None
             ) -> tuple[list[str], dict[str, np.ndarray]]:
    """All array names of the archive at ``path`` and the arrays ``names`` (default: all) that it holds,
    each checked before it is allocated (see the module docstring)."""
    p = Path(path)
    zf, infos = _open_infos(p)
    archive_bytes = p.stat().st_size
    with zf:
        out = {}
        for name in infos if names is None else [n for n in names if n in infos]:
            info = infos[name]
            _check_member(p, info, archive_bytes)
            try:
                out[name] = _read_member(p, zf, info)
            except CorruptFileError:
                raise
            except READ_ERRORS as exc:
                raise CorruptFileError(f"{p}: member {info.filename!r} cannot be read ({type(exc).__name__}: "
                                       f"{exc}); the file is corrupt") from exc
    return list(infos), out

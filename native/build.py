"""Host loader: build rctc's C kernel library (plus generated sources) and load it with ctypes.

Needs: a C99 compiler, named by ``CC`` else ``cc``. Leaves: one shared object per distinct
build under ``$XDG_CACHE_HOME/rctc/native/`` (else ``~/.cache/rctc/native/``), named by a
SHA-256 of the sources, the flags, the compiler's path and its ``--version`` output. A build
runs in a private temporary folder inside the cache and is published by an atomic rename of
the fsynced file, so concurrent builders are safe (the last rename wins, both files are
complete) and a reader never sees a partial library. The library's own objects are cached too
(``obj/``, one per source, keyed the same way), so a new generated file costs one compile and a
link. A missing or failing compiler raises :class:`rctc.errors.NativeUnavailable` with a
one-line reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rctc.errors import NativeUnavailable

CSRC = Path(__file__).resolve().parent / "csrc"
INCLUDE = CSRC / "include"

#: Every compiler flag the host build uses (the one place they are written).
CFLAGS: tuple[str, ...] = ("-std=c99", "-O3", "-Wall", "-Wextra", "-Werror", "-fPIC", "-DRCTC_THREADS")
#: Extra flags for SIMD variant files, by the suffix of their stem.
ISA_FLAGS: dict[str, tuple[str, ...]] = {"_avx2": ("-mavx2",),
                                         "_avx512": ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni")}
LDFLAGS: tuple[str, ...] = ("-shared", "-pthread")
_X86 = platform.machine().lower() in ("x86_64", "amd64")
_LOCK = threading.Lock()
_LOADED: dict[Path, ctypes.CDLL] = {}


@dataclass(frozen=True)
class Compiler:
    """A C compiler found on this machine: its command and ``--version`` text."""

    argv: tuple[str, ...]
    version: str


def find_compiler(env: dict[str, str] | None = None) -> Compiler:
    """The compiler from ``CC`` (may carry arguments) else ``cc``; NativeUnavailable if absent."""
    env = os.environ if env is None else env
    cc = env.get("CC", "").strip() or "cc"
    argv = tuple(shlex.split(cc))
    exe = shutil.which(argv[0]) if argv else None
    if not exe:
        raise NativeUnavailable(f"no C compiler: {cc!r} (from {'CC' if env.get('CC') else 'the default cc'}) "
                                "is not on PATH; install one or set CC")
    try:
        out = subprocess.run([exe, *argv[1:], "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise NativeUnavailable(f"C compiler {cc!r} cannot run: {exc}") from None
    if out.returncode != 0:
        raise NativeUnavailable(f"C compiler {cc!r} --version failed: {_first_line(out.stderr)}")
    return Compiler((exe, *argv[1:]), out.stdout.strip())


def library_sources() -> list[Path]:
    """The library's C files: every ``csrc/**/*.c``, the x86 variants only on x86-64 hosts."""
    files = sorted(CSRC.rglob("*.c"))
    return [f for f in files if _X86 or "x86" not in f.relative_to(CSRC).parts]


def _headers() -> list[Path]:
    return sorted(CSRC.rglob("*.h"))


def flags_for(src: Path) -> tuple[str, ...]:
    """Compile flags of one source file (CFLAGS plus its ISA's flags)."""
    extra: tuple[str, ...] = ()
    for suffix, isa in ISA_FLAGS.items():
        if src.stem.endswith(suffix):
            extra = isa
    return (*CFLAGS, *extra, f"-I{INCLUDE}")


def cache_dir(env: dict[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/rctc/native`` or ``~/.cache/rctc/native``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rctc" / "native"


def build_key(compiler: Compiler, sources: Sequence[Path]) -> str:
    """SHA-256 over the compiler, every flag, and the name and bytes of every source and header."""
    h = hashlib.sha256()
    for part in (*compiler.argv, compiler.version, *LDFLAGS):
        h.update(part.encode() + b"\0")
    for src in (*sources, *_headers()):
        h.update(src.name.encode() + b"\0")
        h.update(" ".join(flags_for(src)[:-1]).encode() + b"\0")  # not the install path
        h.update(src.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if re.search(r"\berror\b:", line):
            return line.strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else "(no output)"


def _object_key(compiler: Compiler, src: Path) -> str:
    """SHA-256 of one library object's inputs: compiler, flags, the source and every header."""
    h = hashlib.sha256()
    for part in (*compiler.argv, compiler.version, *flags_for(src)[:-1]):
        h.update(part.encode() + b"\0")
    for f in (src, *_headers()):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def _publish(tmp: Path, target: Path) -> None:
    """fsync ``tmp`` and rename it onto ``target`` (atomic; the last of racing writers wins)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def _compile(compiler: Compiler, sources: Sequence[Path], out: Path, work: Path, objdir: Path | None = None) -> None:
    """Compile every source (one process per core) and link them into ``out``; a library source's
    object is taken from (or published to) ``objdir`` when given."""
    objs: list[str] = []
    jobs: list[tuple[Compiler, list[str], str, Path | None]] = []
    for i, src in enumerate(sources):
        tmp = work / f"{i:03d}_{src.stem}.o"
        cached = objdir / f"{src.stem}-{_object_key(compiler, src)}.o" \
            if objdir is not None and src.is_relative_to(CSRC) else None
        objs.append(str(cached or tmp))
        if cached is None or not cached.is_file():
            jobs.append((compiler, [*flags_for(src), "-c", str(src), "-o", str(tmp)], src.name, cached))
    if objdir is not None and any(j[3] is not None for j in jobs):
        objdir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        for fut in [pool.submit(_run, *job[:3]) for job in jobs]:
            fut.result()
    for _, args, _, target in jobs:
        if target is not None:
            _publish(Path(args[-1]), target)
    _run(compiler, [*LDFLAGS, *objs, "-o", str(out)], "the link")


def _run(compiler: Compiler, args: list[str], what: str) -> None:
    try:
        res = subprocess.run([*compiler.argv, *args], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise NativeUnavailable(f"C compiler {compiler.argv[0]} failed on {what}: {exc}") from None
    if res.returncode != 0:
        raise NativeUnavailable(f"C compiler {compiler.argv[0]} failed on {what}: {_first_line(res.stderr)}")


def build_library(extra_sources: Sequence[str | os.PathLike[str]] = (), env: dict[str, str] | None = None) -> Path:
    """Path of the cached shared object for the library plus ``extra_sources``, built if needed."""
    compiler = find_compiler(env)
    sources = [*library_sources(), *(Path(s).resolve() for s in extra_sources)]
    key = build_key(compiler, sources)
    root = cache_dir(env)
    target = root / f"librctc-{key}.so"
    if target.is_file():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    except OSError as exc:
        raise NativeUnavailable(f"cannot write the native build cache {root}: {exc.strerror}") from None
    try:
        tmp = work / target.name
        _compile(compiler, sources, tmp, work, root / "obj")
        _publish(tmp, target)
        dfd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def load_library(extra_sources: Sequence[str | os.PathLike[str]] = (),
                 env: dict[str, str] | None = None) -> ctypes.CDLL:
    """Build (or find in the cache) and load the library; one CDLL per shared object per process."""
    path = build_library(extra_sources, env)
    with _LOCK:
        lib = _LOADED.get(path)
        if lib is None:
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as exc:
                raise NativeUnavailable(f"cannot load the native library {path}: {exc}") from None
            _LOADED[path] = lib
    return lib

"""The host loader: cache hit, cache key, atomic concurrent builds, missing / failing compiler.

Builds go to temporary ``XDG_CACHE_HOME`` folders; the user's cache is never touched.
"""

from __future__ import annotations

import ctypes
import fnmatch
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pytest

from rctc.errors import NativeUnavailable, RctcError
from rctc.native import build


def test_cached_build_is_reused_without_compiling(native_env, native_cache: Path, kernels, monkeypatch) -> None:
    first = build.build_library(env=native_env)  # the session's build (made by the kernels fixture)
    assert first.parent == native_cache and first.is_file()
    mtime = first.stat().st_mtime_ns

    def no_compiler(*args, **kwargs):
        raise AssertionError("a cached library was rebuilt")

    monkeypatch.setattr(build, "_compile", no_compiler)
    assert build.build_library(env=native_env) == first
    assert first.stat().st_mtime_ns == mtime
    assert build.load_library(env=native_env) is build.load_library(env=native_env)
    assert not [p for p in native_cache.iterdir() if p.name.startswith(".build-")]  # temp folders removed


def test_key_follows_sources_flags_and_compiler(tmp_path: Path, monkeypatch) -> None:
    cc = build.find_compiler()
    gen = tmp_path / "model.c"
    gen.write_text("int rctc_model_answer(void) { return 1; }\n")
    lib_only = build.build_key(cc, build.library_sources())
    with_gen = build.build_key(cc, [*build.library_sources(), gen])
    assert lib_only != with_gen
    gen.write_text("int rctc_model_answer(void) { return 2; }\n")
    assert build.build_key(cc, [*build.library_sources(), gen]) != with_gen
    other_cc = build.Compiler(cc.argv, cc.version + " (patched)")
    assert build.build_key(other_cc, build.library_sources()) != lib_only
    monkeypatch.setattr(build, "CFLAGS", (*build.CFLAGS, "-DRCTC_EXTRA"))
    assert build.build_key(cc, build.library_sources()) != lib_only
    assert build.build_key(cc, build.library_sources()) == build.build_key(cc, build.library_sources())


def test_generated_source_is_built_and_loaded_concurrently(tmp_path: Path, monkeypatch) -> None:
    """Two builders racing on an empty cache both get a complete, loadable library.

    The library's own sources are left out (the session fixture builds those) to keep this fast;
    the generated file still compiles against the public header."""
    monkeypatch.setattr(build, "library_sources", lambda: [])
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    gen = tmp_path / "model.c"
    gen.write_text('#include "rctc_kernels.h"\nint rctc_model_isa_is_known(void) { return RCTC_ISA_AVX2 == 1; }\n')
    paths: list[Path] = []
    errors: list[BaseException] = []

    def builder() -> None:
        try:
            paths.append(build.build_library([gen], env=env))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=builder) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(paths) == 2 and paths[0] == paths[1]
    lib = ctypes.CDLL(str(paths[0]))
    assert lib.rctc_model_isa_is_known() == 1
    assert [p.name for p in paths[0].parent.iterdir()] == [paths[0].name]


@pytest.mark.parametrize("cc", ["/nonexistent/bin/cc", "no-such-compiler-rctc"])
def test_missing_compiler_is_one_line(tmp_path: Path, cc: str) -> None:
    env = dict(os.environ, CC=cc, XDG_CACHE_HOME=str(tmp_path))
    with pytest.raises(NativeUnavailable) as info:
        build.load_library(env=env)
    msg = str(info.value)
    assert isinstance(info.value, RctcError)
    assert "\n" not in msg and cc in msg and "CC" in msg
    assert not (tmp_path / "rctc").exists()


def test_compile_error_is_one_line_and_publishes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(build, "library_sources", lambda: [])  # only the broken file: fast
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    bad = tmp_path / "broken.c"
    bad.write_text("int broken(void) { return undeclared_name; }\n")
    with pytest.raises(NativeUnavailable) as info:
        build.build_library([bad], env=env)
    msg = str(info.value)
    assert "\n" not in msg and "broken.c" in msg and "undeclared_name" in msg
    assert list((tmp_path / "rctc" / "native").iterdir()) == []


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")
def test_portable_kernels_build_bare_metal(tmp_path: Path) -> None:
    """Cortex-M4, no RCTC_THREADS: warning-free C99, and the objects (GEMM-class and integer
    element-wise / normalisation / loss kernels) need no OS, libc beyond memcpy / memset, or
    floating point (no __aeabi_f* / __aeabi_d* soft-float helper is referenced)."""
    objs = []
    for src in build.library_sources():
        if "x86" in src.parts or src.parent.name != "kernels":
            continue
        obj = tmp_path / (src.stem + ".o")
        subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-std=c99", "-O2", "-Wall", "-Wextra",
                        "-Werror", f"-I{build.INCLUDE}", "-c", str(src), "-o", str(obj)], check=True)
        objs.append(str(obj))
    assert any(Path(o).name.startswith("iq_") for o in objs)  # the integer kernels (rctc_intops.h) are in
    nm = subprocess.run(["arm-none-eabi-nm", "-u", *objs], capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1] for line in nm.splitlines() if line.strip().startswith("U ")}
    ours = {u for u in undefined if u.startswith("rctc_") or u.startswith("iq_")}
    floats = {u for u in undefined if u.startswith(("__aeabi_f", "__aeabi_d"))}
    assert not floats, floats
    # libgcc's 64-bit integer division (the Cortex-M4 has no 64-bit divide instruction) is allowed
    assert undefined - ours <= {"memcpy", "memset", "__aeabi_ldivmod", "__aeabi_uldivmod"}, undefined - ours


def test_every_c_source_ships_with_the_wheel() -> None:
    """pyproject's package-data for rctc.native covers every file of csrc/ (else an installed
    rctc could not build its own library)."""
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["rctc.native"]
    for f in build.CSRC.rglob("*"):
        if f.is_file():
            rel = f.relative_to(build.CSRC.parent).as_posix()
            assert any(fnmatch.fnmatch(rel, p) and rel.count("/") == p.count("/") for p in patterns), rel

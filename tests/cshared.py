"""Test helper: build C sources of ``native/csrc`` with the system compiler and load them (ctypes).

Needs: the system C compiler (``CC``, else ``cc``); :func:`compiler` returns None without one so a
fixture can skip with a reason. Leaves: the shared object in the caller's temporary folder.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

CSRC = Path(__file__).resolve().parents[1] / "native" / "csrc"
INCLUDE = CSRC / "include"
#: the warning flags every rctc C file must pass
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


def compiler() -> str | None:
    """The path of the system C compiler (``$CC``, else ``cc``), or None when there is none."""
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def build_shared(sources: list[Path], out_dir: Path, name: str) -> ctypes.CDLL:
    """Compile ``sources`` (``-std=c99 -Wall -Wextra -Werror -O2``) into ``out_dir/name.so`` and
    load it. A warning or error fails with the compiler's output."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler")
    out = out_dir / f"{name}.so"
    cmd = [cc, *STRICT, "-O2", "-shared", "-fPIC", f"-I{INCLUDE}", *map(str, sources), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    return ctypes.CDLL(str(out))


def arm_compile_objects(sources: list[Path], out_dir: Path) -> list[Path] | None:
    """Compile each source for Cortex-M4 (``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb``, strict
    flags, ``-Wpedantic``); None when the toolchain is not installed."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        return None
    objs = []
    for src in sources:
        obj = out_dir / f"{src.stem}.o"
        cmd = [gcc, "-mcpu=cortex-m4", "-mthumb", *STRICT, "-Wpedantic", "-O2", f"-I{INCLUDE}", "-c", str(src)]
        proc = subprocess.run([*cmd, "-o", str(obj)], capture_output=True, text=True)
        if proc.returncode != 0 or proc.stderr.strip():
            raise AssertionError(f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}")
        objs.append(obj)
    return objs


def undefined_symbols(obj: Path) -> list[str]:
    """Symbols an object file needs from elsewhere (``arm-none-eabi-nm -u``)."""
    nm = shutil.which("arm-none-eabi-nm") or "nm"
    proc = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, check=True)
    return [line.split()[-1] for line in proc.stdout.splitlines() if line.strip()]

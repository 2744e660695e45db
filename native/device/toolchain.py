"""Finding the tools a target needs, and saying in one line what is missing and how to get it.

Needs: ``PATH``. Leaves: nothing (only looks). The cortex-m4 target needs Debian's
``gcc-arm-none-eabi`` and ``libnewlib-arm-none-eabi`` (nano and rdimon specs) to build, and
``qemu-system-arm`` with the board's machine to run; the host target needs ``make`` and ``cc``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from rctc.native.device.boards import TARGETS, board_named

CROSS = "arm-none-eabi-"
DEBIAN_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
INSTALL_HINT = f"install them with `apt-get install {DEBIAN_PACKAGES}`"


@functools.cache
def _gcc_has_file(gcc: str, name: str) -> bool:
    """Whether ``gcc -print-file-name=name`` finds the file (it echoes the bare name otherwise)."""
    try:
        out = subprocess.run([gcc, f"-print-file-name={name}"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    found = out.stdout.strip()
    return out.returncode == 0 and os.path.isabs(found) and os.path.exists(found)


@functools.cache
def _qemu_machines(qemu: str) -> frozenset[str]:
    try:
        out = subprocess.run([qemu, "-M", "help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.split()[0] for line in out.stdout.splitlines()[1:] if line.strip())


def toolchain_problem(target: str, board: str = "mps2-an386", *, run: bool = False) -> str | None:
    """Why ``target`` cannot be built (and, with ``run``, run) here, or None when it can.

    The reason is one clause naming the missing piece and how to install it; the caller adds
    where the project is and which ``make`` command builds it.
    """
    if target not in TARGETS:
        return f"unknown target {target!r}: use one of {', '.join(TARGETS)}"
    if shutil.which("make") is None:
        return "make is not installed (Debian: apt-get install make)"
    if target == "host":
        if shutil.which("cc") is None:
            return "no host C compiler `cc` found (Debian: apt-get install gcc)"
        return None
    tools = [CROSS + t for t in ("gcc", "size", "nm")]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not found: {INSTALL_HINT}"
    gcc = shutil.which(CROSS + "gcc")
    assert gcc is not None
    for name in ("nano.specs", "rdimon.specs", "librdimon.a"):
        if not _gcc_has_file(gcc, name):
            return f"the cross compiler has no newlib ({name} not found): {INSTALL_HINT}"
    if run:
        spec = board_named(board)
        if spec.qemu_machine is None:
            return f"board {board} is a memory budget with no emulator: it is built and sized, not run"
        qemu = shutil.which("qemu-system-arm")
        if qemu is None:
            return f"qemu-system-arm not found: {INSTALL_HINT}"
        if spec.qemu_machine not in _qemu_machines(qemu):
            return f"qemu-system-arm has no machine {spec.qemu_machine} (QEMU 6.0 or newer has it)"
    return None

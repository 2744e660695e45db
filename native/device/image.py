"""Building a written project with ``make`` and reading the linked image.

Needs: a :class:`~rctc.native.device.project.Project` and the target's toolchain (see
:mod:`rctc.native.device.toolchain`). Leaves: ``build/<target>[-<board>]/`` in the project with the
image and ``build.log``; an :class:`ImageReport` with flash / RAM from ``arm-none-eabi-size``
(flash = text + data, RAM = data + bss, the stack reservation included in bss), the sizes of
``rctc_arena`` and ``rctc_state`` from the symbol table, and the float helpers the soft-float
image links. A link that overflows the board raises :class:`DoesNotFit` with one line: the
region, by how much, the budget, and the largest objects that go there.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rctc.native.device.boards import board_named
from rctc.native.device.errors import BuildError, DoesNotFit, ToolchainMissing
from rctc.native.device.project import Project
from rctc.native.device.toolchain import CROSS, toolchain_problem

# libgcc's soft-float entry points: the Arm EABI names (__aeabi_fadd, __aeabi_d2iz, __aeabi_i2f,
# __aeabi_cfcmpeq, __aeabi_f2h ...) and the generic GCC names (__addsf3, __floatsisf, __fixdfsi,
# __extendsfdf2, __truncdfsf2, __eqsf2, __unorddf2 ...), and the half-precision helpers.
FLOAT_HELPER_PATTERN = re.compile(
    r"^(?:__aeabi_(?:[fd]\w+|u?[il]2[fdh]|h2f(?:_alt)?|c[fd]\w+)"
    r"|__(?:add|sub|mul|div|neg)[sdt]f3"
    r"|__(?:fix|fixuns)[sdt]f[sdt]i"
    r"|__float(?:un)?[sdt]i[sdt]f"
    r"|__(?:extend|trunc)[sdth]f[sdth]f2"
    r"|__(?:eq|ne|lt|le|gt|ge|un|unord|cmp)[sdt]f2"
    r"|__powi[sdt]f2"
    r"|__gnu_(?:f2h|h2f|d2h)_\w+)$"
)
_OVERFLOW = re.compile(r"region [`'\"]?(\w+)['\"]? overflowed by (\d+) bytes")
_SYMBOLS_SHOWN = 3


@dataclass(frozen=True)
class ImageReport:
    """What the linked image says about itself (sizes in bytes; None where not measured)."""

    image: Path
    text_bytes: int | None
    data_bytes: int | None
    bss_bytes: int | None
    flash_bytes: int | None  # text + data
    ram_bytes: int | None  # data + bss (stack reservation included)
    arena_bytes: int | None  # size of the symbol rctc_arena
    state_bytes: int | None  # size of the symbol rctc_state
    float_helpers: tuple[str, ...]  # soft-float helpers linked (device images only)


def _tool(project: Project, name: str) -> str:
    return name if project.target == "host" else CROSS + name


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def parse_size(text: str) -> tuple[int, int, int]:
    """(text, data, bss) from the Berkeley-format output of ``size`` for one file."""
    lines = [ln.split() for ln in text.strip().splitlines()]
    if len(lines) < 2 or lines[0][:3] != ["text", "data", "bss"]:
        raise ValueError(f"unexpected size output: {text!r}")
    t, d, b = (int(x) for x in lines[1][:3])
    return t, d, b


def symbol_sizes(nm_output: str) -> dict[str, tuple[int, str]]:
    """name -> (size, nm type letter) from ``nm -S`` output (symbols without a size are left out)."""
    out: dict[str, tuple[int, str]] = {}
    for line in nm_output.splitlines():
        parts = line.split()
        if len(parts) == 4:
            _addr, size, kind, name = parts
            out[name] = (int(size, 16), kind)
    return out


def float_helpers(nm_output: str) -> tuple[str, ...]:
    """The float helpers defined in a linked image, from plain ``nm`` output."""
    found = set()
    for line in nm_output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[-2]) == 1 and parts[-2] in "TtWw" and FLOAT_HELPER_PATTERN.match(parts[-1]):
            found.add(parts[-1])
    return tuple(sorted(found))


def _largest_objects(project: Project, region: str) -> str:
    """'name N B, ...' for the largest objects of the compiled files that go into ``region``."""
    kinds = "bBdD" if region == "RAM" else "tTrRdD"
    objs = sorted(str(p) for p in project.build_dir.rglob("*.o"))
    if not objs:
        return ""
    try:
        res = _run([_tool(project, "nm"), "-S", "--size-sort", *objs], project.directory, 60)
    except (OSError, subprocess.SubprocessError):
        return ""
    sizes: dict[str, int] = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in kinds:
            sizes[parts[3]] = max(sizes.get(parts[3], 0), int(parts[1], 16))
    top = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:_SYMBOLS_SHOWN]
    return ", ".join(f"{name} {size} B" for name, size in top)


def _does_not_fit(project: Project, log: str) -> DoesNotFit | None:
    over = {region: int(n) for region, n in _OVERFLOW.findall(log)}
    if not over:
        return None
    board = board_named(project.board)
    budget = {"RAM": board.ram_bytes, "FLASH": board.flash_bytes}
    parts = []
    for region in sorted(over):
        size = budget.get(region)
        what = f"{region} overflowed by {over[region]} bytes"
        if size is not None:
            what += f" ({over[region] + size} needed, {size} on the board)"
        largest = _largest_objects(project, region)
        if largest:
            what += f"; largest there: {largest}"
        parts.append(what)
    return DoesNotFit(f"{project.config.name} does not fit board {project.board}: " + "; ".join(parts))


def build(
    project: Project, *, jobs: int = 2, timeout: float = 600.0, make_args: Sequence[str] = ()
) -> ImageReport:
    """Run ``make`` in the project and report on the image; see the module docstring.

    ``make_args`` are extra ``VAR=value`` settings (e.g. ``WERROR=-Werror``, ``OPT=-Os``).
    """
    problem = toolchain_problem(project.target, project.board)
    if problem is not None:
        raise ToolchainMissing(
            f"cannot build for {project.target}: {problem}; the project is written in {project.directory}, "
            f"build it there with `make`"
        )
    cmd = ["make", "-C", str(project.directory), f"-j{jobs}", f"TARGET={project.target}", f"BOARD={project.board}"]
    cmd += list(make_args)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildError(f"make did not finish within {timeout:.0f} s in {project.directory}") from None
    log = res.stdout + res.stderr
    project.build_dir.mkdir(parents=True, exist_ok=True)
    (project.build_dir / "build.log").write_text(log)
    if res.returncode != 0:
        unfit = _does_not_fit(project, log)
        if unfit is not None:
            raise unfit
        errors = [ln for ln in log.splitlines() if "error" in ln.lower()]
        first = errors[0].strip() if errors else (log.strip().splitlines() or ["(no output)"])[-1]
        raise BuildError(f"make failed in {project.directory}: {first} (full log: {project.build_dir / 'build.log'})")
    return inspect_image(project)


def inspect_image(project: Project) -> ImageReport:
    """Sizes, arena / state symbols and float helpers of an already built image."""
    image = project.image

    def tool(name: str, *args: str) -> str:
        res = _run([_tool(project, name), *args, str(image)], project.directory, 60)
        if res.returncode != 0:
            raise BuildError(f"{_tool(project, name)} cannot read {image}: {(res.stderr.strip() or 'failed')}")
        return res.stdout

    syms = symbol_sizes(tool("nm", "-S"))
    arena = syms.get("rctc_arena", (None, ""))[0]
    state = syms.get("rctc_state", (None, ""))[0]
    if project.target == "host":
        return ImageReport(image, None, None, None, None, None, arena, state, ())
    t, d, b = parse_size(tool("size"))
    return ImageReport(image, t, d, b, t + d, d + b, arena, state, float_helpers(tool("nm")))

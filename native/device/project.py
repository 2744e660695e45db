"""Writing a device project into a folder.

Needs: the model's C sources (path -> text, implementing ``rctc_model.h``), its data arrays
(:class:`CArray`, emitted as C const arrays into ``src/rctc_data.c`` / ``.h``) and the sizes
and step range of :class:`ModelConfig` (into ``src/rctc_model_config.h``). Leaves: ``DIR`` with
the harness, ports, startup code, linker scripts and Makefile copied from this package, the
model under ``DIR/src/``, and ``project.mk`` selecting the target and board; every file written
atomically (temporary file, fsync, rename), files already there that rctc does not write are
left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np

from rctc.errors import RctcError
from rctc.native.device.boards import TARGETS, board_named
from rctc.rct_format import atomic_write_bytes

TEMPLATE_FILES = (
    "Makefile",
    "main.c",
    "rctc_model.h",
    "rctc_port.h",
    "port_cortex_m.c",
    "port_host.c",
    "startup_cortex_m.c",
    "boards/sections.ld",
)
GENERATED = ("rctc_data.c", "rctc_data.h", "rctc_model_config.h")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_C_TYPES = {
    np.dtype(np.int8): "int8_t",
    np.dtype(np.int16): "int16_t",
    np.dtype(np.int32): "int32_t",
    np.dtype(np.int64): "int64_t",
    np.dtype(np.uint8): "uint8_t",
    np.dtype(np.uint16): "uint16_t",
    np.dtype(np.uint32): "uint32_t",
    np.dtype(np.uint64): "uint64_t",
    np.dtype(np.float32): "float",
}
_PER_LINE = 16


@dataclass(frozen=True)
class CArray:
    """A named constant array the model reads (state initialisers, training samples).

    Emitted as ``const <type> <name>[n]`` (flattened, C order) in flash, with
    ``RCTC_DATA_<NAME>_LEN`` in ``rctc_data.h``.
    """

    name: str
    array: np.ndarray

    def __post_init__(self) -> None:
        if not _IDENT.match(self.name):
            raise ValueError(f"array name {self.name!r} is not a C identifier")
        if np.dtype(self.array.dtype) not in _C_TYPES:
            raise ValueError(f"array {self.name}: dtype {self.array.dtype} has no C type here")
        if self.array.size == 0:
            raise ValueError(f"array {self.name} is empty (C has no zero-length arrays)")


@dataclass(frozen=True)
class ModelConfig:
    """What ``rctc_model_config.h`` states: name, sizes and the step range the harness runs."""

    name: str
    arena_bytes: int
    state_bytes: int
    steps: int
    first_step: int = 0
    extra_defines: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise ValueError(f"model name {self.name!r}: use letters, digits, '_', '.', '-'")
        for what in ("arena_bytes", "state_bytes", "steps", "first_step"):
            if getattr(self, what) < 0:
                raise ValueError(f"{what} must be >= 0")
        if self.first_step + self.steps > 0xFFFFFFFF:
            raise ValueError("the step counter is 32-bit on the device: first_step + steps must be < 2^32")


@dataclass(frozen=True)
class Project:
    """A written project: where it is and what it is for."""

    directory: Path
    target: str
    board: str
    config: ModelConfig
    model_sources: tuple[str, ...]  # paths relative to directory, the C files make compiles

    @property
    def build_dir(self) -> Path:
        """Where make puts objects and the image (one folder per target and board)."""
        return self.directory / "build" / (self.target if self.target == "host" else f"{self.target}-{self.board}")

    @property
    def image(self) -> Path:
        return self.build_dir / ("model" if self.target == "host" else "model.elf")


def _c_literal(value: int | float, ctype: str) -> str:
    if ctype == "float":
        return f"{float(value).hex()}f"
    v = int(value)
    if ctype == "int64_t" and v == -(2**63):
        return "(-9223372036854775807LL - 1)"
    if ctype == "int32_t" and v == -(2**31):
        return "(-2147483647 - 1)"
    if ctype.startswith("uint"):
        return f"{v}u"
    if ctype == "int64_t":
        return f"{v}LL"
    return str(v)


def render_data(arrays: Sequence[CArray]) -> tuple[str, str]:
    """The text of ``rctc_data.h`` and ``rctc_data.c`` for ``arrays``."""
    names = [a.name for a in arrays]
    if len(set(names)) != len(names):
        raise ValueError(f"array names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    head = [
        "/* rctc_data.h: the model's constant data (written by rctc). */",
        "#ifndef RCTC_DATA_H",
        "#define RCTC_DATA_H",
        "",
        "#include <stdint.h>",
        "",
    ]
    body = ["/* rctc_data.c: the model's constant data, in flash (written by rctc). */", '#include "rctc_data.h"', ""]
    for a in arrays:
        ctype = _C_TYPES[np.dtype(a.array.dtype)]
        flat = np.ascontiguousarray(a.array).reshape(-1)
        head.append(f"#define RCTC_DATA_{a.name.upper()}_LEN {flat.size}u")
        head.append(f"extern const {ctype} {a.name}[{flat.size}];")
        values = [_c_literal(v, ctype) for v in flat.tolist()]
        lines = [", ".join(values[i : i + _PER_LINE]) for i in range(0, len(values), _PER_LINE)]
        body.append(f"const {ctype} {a.name}[{flat.size}] = {{")
        body.extend(f"    {line}," for line in lines)
        body.append("};")
        body.append("")
    head += ["", "#endif /* RCTC_DATA_H */", ""]
    return "\n".join(head), "\n".join(body)


def render_config(config: ModelConfig) -> str:
    """The text of ``rctc_model_config.h``."""
    lines = [
        "/* rctc_model_config.h: sizes and step range of the model (written by rctc; see rctc_model.h). */",
        "#ifndef RCTC_MODEL_CONFIG_H",
        "#define RCTC_MODEL_CONFIG_H",
        "",
        f'#define RCTC_MODEL_NAME "{config.name}"',
        f"#define RCTC_MODEL_ARENA_BYTES {config.arena_bytes}u",
        f"#define RCTC_MODEL_STATE_BYTES {config.state_bytes}u",
        f"#define RCTC_MODEL_FIRST_STEP {config.first_step}u",
        f"#define RCTC_MODEL_STEPS {config.steps}u",
    ]
    for name, value in sorted(config.extra_defines.items()):
        if not _IDENT.match(name):
            raise ValueError(f"define {name!r} is not a C identifier")
        lines.append(f"#define {name} {int(value)}")
    lines += ["", "#endif /* RCTC_MODEL_CONFIG_H */", ""]
    return "\n".join(lines)


def render_project_mk(
    target: str, board: str, stack_bytes: int, sources: Sequence[str], include_dirs: Sequence[str],
    host_x86: Sequence[str] = (),
) -> str:
    """The text of ``project.mk``: target, board, stack reservation and the model's files (and the
    x86 SIMD variants a host build on x86-64 adds)."""
    return "\n".join(
        [
            "# project.mk: what this project builds (written by rctc; the Makefile includes it).",
            f"TARGET ?= {target}",
            f"BOARD ?= {board}",
            f"STACK_BYTES ?= {stack_bytes}",
            "MODEL_SRCS = " + " ".join(sources),
            "MODEL_INCLUDES = " + " ".join(f"-I{d}" for d in include_dirs),
            "HOST_X86_SRCS = " + " ".join(host_x86),
            "",
        ]
    )


def _check_source_path(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts or p.suffix not in (".c", ".h"):
        raise ValueError(f"source path {path!r}: give a relative .c or .h path without '..'")
    if str(p) in GENERATED:
        raise ValueError(f"source path {path!r} is one rctc writes itself")
    return p


def _template(name: str) -> bytes:
    return resources.files("rctc.native.device").joinpath(name).read_bytes()


def write_project(
    out_dir: str | Path,
    sources: Mapping[str, str],
    arrays: Sequence[CArray],
    config: ModelConfig,
    *,
    target: str = "cortex-m4",
    board: str = "mps2-an386",
    stack_bytes: int = 8192,
    host_x86: Sequence[str] = (),
) -> Project:
    """Write a buildable project for ``target`` / ``board`` into ``out_dir`` (created if absent).

    ``host_x86`` names ``.c`` files of ``sources`` that only a host build on x86-64 compiles
    (SIMD variants; a ``*_avx2.c`` file is built with ``-mavx2``)."""
    if target not in TARGETS:
        raise RctcError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    board_named(board)
    if stack_bytes <= 0 or stack_bytes % 8:
        raise ValueError("stack_bytes must be a positive multiple of 8")
    checked = {_check_source_path(k): v for k, v in sources.items()}
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise RctcError(f"{root}: exists and is not a folder; give a folder for the project")
    try:
        (root / "src").mkdir(parents=True, exist_ok=True)
        (root / "boards").mkdir(exist_ok=True)
    except OSError as exc:
        raise RctcError(f"{root}: cannot create the project folder ({exc.strerror or exc})") from exc

    files: dict[str, bytes] = {name: _template(name) for name in TEMPLATE_FILES}
    for b in sorted({board, "mps2-an386", "stm32f746"}):
        for ext in (".ld", ".mk"):
            files[f"boards/{b}{ext}"] = _template(f"boards/{b}{ext}")
    data_h, data_c = render_data(arrays)
    files["src/rctc_data.h"] = data_h.encode()
    files["src/rctc_data.c"] = data_c.encode()
    files["src/rctc_model_config.h"] = render_config(config).encode()
    for rel, text in checked.items():
        files[f"src/{rel}"] = text.encode()
    x86 = {str(_check_source_path(p)) for p in host_x86}
    if not x86 <= {str(rel) for rel in checked}:
        raise ValueError(f"host_x86 names files that are not sources: {sorted(x86 - {str(r) for r in checked})}")
    c_files = sorted(f"src/{rel}" for rel in checked if rel.suffix == ".c" and str(rel) not in x86)
    c_files.append("src/rctc_data.c")
    header_dirs = {rel.parent for rel in checked if rel.suffix == ".h"} - {PurePosixPath(".")}
    include_dirs = sorted(f"src/{d}" for d in header_dirs)
    files["project.mk"] = render_project_mk(
        target, board, stack_bytes, c_files, include_dirs, sorted(f"src/{p}" for p in x86)).encode()

    for rel, data in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, data)
    return Project(root, target, board, config, tuple(c_files))

"""The microcontroller target's project machinery (``rctc.native.device``).

A device project is a folder that builds with ``make`` into one image that trains a model on a
microcontroller (or, ``TARGET=host``, on the host with its ``cc``): the model's C sources (from
the code generator, or a test fixture) implementing the API of ``rctc_model.h``, its data as C
const arrays, the harness (``main.c``), per-target ports, startup code, linker scripts and the
Makefile kept as files in this folder (package data).

    project = write_project(out_dir, sources, arrays, config, target="cortex-m4", board="mps2-an386")
    image = build(project)           # make; flash / RAM from arm-none-eabi-size, float helpers from nm
    result = run(project)            # make run (QEMU for cortex-m4): digest and instructions

Needs: nothing from the runtime or the rest of the compiler (it takes C text and integer
arrays). Leaves: files written atomically; a missing toolchain, a model that does not fit its
board, or a failed run raise an :class:`~rctc.errors.RctcError` subclass with one line.
"""

from __future__ import annotations

from rctc.native.device.boards import BOARDS, TARGETS, Board, board_named
from rctc.native.device.errors import BuildError, DeviceRunError, DoesNotFit, ToolchainMissing
from rctc.native.device.image import FLOAT_HELPER_PATTERN, ImageReport, build, float_helpers
from rctc.native.device.project import CArray, ModelConfig, Project, write_project
from rctc.native.device.report import codegen_summary
from rctc.native.device.run import RunResult, parse_output, run
from rctc.native.device.toolchain import toolchain_problem

__all__ = [
    "BOARDS",
    "FLOAT_HELPER_PATTERN",
    "TARGETS",
    "Board",
    "BuildError",
    "CArray",
    "DeviceRunError",
    "DoesNotFit",
    "ImageReport",
    "ModelConfig",
    "Project",
    "RunResult",
    "ToolchainMissing",
    "board_named",
    "build",
    "codegen_summary",
    "float_helpers",
    "parse_output",
    "run",
    "toolchain_problem",
    "write_project",
]

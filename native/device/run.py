"""Running a built project (``make run``: QEMU for cortex-m4, the binary itself for host) and
reading what the harness printed.

Needs: a built :class:`~rctc.native.device.project.Project` (``run`` builds it first through
``make``) and, for cortex-m4, ``qemu-system-arm``. Leaves: a :class:`RunResult`; a run that
times out, exits non-zero or prints no digest raises :class:`DeviceRunError` with one line.
The instruction count is what QEMU's ``-icount`` clock counted for the training steps
(instructions of the emulated core, not time); the host has no counter (``None``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass

from rctc.native.device.errors import DeviceRunError, ToolchainMissing
from rctc.native.device.project import Project
from rctc.native.device.toolchain import toolchain_problem

_RECORD = re.compile(r"^(digest|digest_init) ([0-9a-f]{8})$|^instructions (\d+)$|^steps (\d+) (\d+)$")


@dataclass(frozen=True)
class RunResult:
    """The harness's records."""

    digest: int
    digest_init: int | None
    first_step: int
    steps: int
    instructions: int | None  # executed by all the steps; None without a counter
    output: str

    @property
    def digest_hex(self) -> str:
        return f"{self.digest:08x}"

    @property
    def instructions_per_step(self) -> float | None:
        if self.instructions is None or self.steps == 0:
            return None
        return self.instructions / self.steps


def parse_output(text: str) -> RunResult:
    """The records of the harness's output; a ValueError when the digest or the end is missing."""
    found: dict[str, int] = {}
    steps = (0, 0)
    done = False
    for raw in text.splitlines():
        line = raw.strip()
        if line == "rctc done":
            done = True
        m = _RECORD.match(line)
        if not m:
            continue
        if m.group(1):
            found[m.group(1)] = int(m.group(2), 16)
        elif m.group(3):
            found["instructions"] = int(m.group(3))
        else:
            steps = (int(m.group(4)), int(m.group(5)))
    if "digest" not in found or not done:
        raise ValueError("the harness printed no digest (or stopped before the end)")
    return RunResult(found["digest"], found.get("digest_init"), steps[0], steps[1], found.get("instructions"), text)


_MAKE_ERROR = re.compile(r"^make(?:\[\d+\])?: \*\*\* .*Error (\d+)")


def _failure(out: str, err: str, returncode: int) -> str:
    """'exit status N: <the line that says why>' for a failed ``make run``."""
    lines = [ln.strip() for ln in (out + "\n" + err).splitlines() if ln.strip()]
    status = returncode
    for ln in lines:
        m = _MAKE_ERROR.match(ln)
        if m:
            status = int(m.group(1))  # the program's status, not make's
    why = [ln for ln in lines if ln.startswith("rctc fault")]
    why = why or [ln for ln in lines if not _MAKE_ERROR.match(ln)]
    return f"exit status {status}: {why[-1] if why else 'no output'}"


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def run(project: Project, *, timeout: float = 300.0) -> RunResult:
    """Build (if needed) and run the project with ``make run``; parse the harness's records."""
    problem = toolchain_problem(project.target, project.board, run=True)
    if problem is not None:
        raise ToolchainMissing(
            f"cannot run for {project.target}: {problem}; the project is written in {project.directory}, "
            f"run it there with `make run`"
        )
    cmd = [
        "make", "-s", "-C", str(project.directory), "run",
        f"TARGET={project.target}", f"BOARD={project.board}", f"QEMU_TIMEOUT={int(timeout) + 5}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # make and the emulator it started, nothing else
        proc.communicate()
        raise DeviceRunError(
            f"{project.config.name} did not finish within {timeout:.0f} s on {project.target} ({project.board})"
        ) from None
    if proc.returncode != 0:
        raise DeviceRunError(
            f"{project.config.name} failed on {project.target} ({project.board}), {_failure(out, err, proc.returncode)}"
        )
    try:
        return parse_output(out)
    except ValueError as exc:
        raise DeviceRunError(f"{project.config.name} on {project.target}: {exc}; last line: {_tail(out)}") from None

"""``rctc codegen``: a compiled model's training loop as a device project, built, sized and run.

Needs: a compiled rct model (.rct) whose device step is C-mappable, training data, and for
building / running the target's toolchain (:mod:`rctc.native.device.toolchain`). Leaves: the
project in the output folder (always, even without a toolchain), and a :class:`CodegenResult`
with the figures of the linked image and of the run.

The device trains on the first ``steps x batch`` samples in file order (the host quantises them,
as ``rctc train --no-shuffle`` does: :mod:`rctc.native.codegen.feeds`), starting at the model's
step counter, with the model's seed (or ``seed``) and learning rate; after the run it prints
the digest ``rctc digest`` prints for the model ``rctc train`` makes from the same arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rctc.analysis.arena import device_nodes, in_place_updates, views
from rctc.errors import RctcError
from rctc.native.device.boards import TARGETS, board_named
from rctc.native.device.errors import DoesNotFit
from rctc.native.device.image import ImageReport, build
from rctc.native.device.project import ModelConfig, Project, write_project
from rctc.native.device.report import codegen_summary
from rctc.native.device.run import RunResult, run
from rctc.native.device.toolchain import toolchain_problem

STACK_BYTES = 8192
_SHOWN = 3
#: the smallest --band-bytes: a conv band of at least one row of columns is built whatever the limit
MIN_BAND_BYTES = 1024


@dataclass
class CodegenResult:
    """What ``rctc codegen`` did: the project, and the image / run figures where measured."""

    project: Project
    nodes: int
    plan_peak_bytes: int | None
    scratch_bytes: int
    band_bytes: int | None = None
    toolchain_missing: str | None = None
    image: ImageReport | None = None
    result: RunResult | None = None

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object (None where not measured)."""
        if self.image is None:
            out: dict[str, Any] = dict.fromkeys(("flash_bytes", "ram_bytes", "arena_bytes", "digest",
                                                 "instructions_per_step"))
            out["plan_peak_bytes"] = self.plan_peak_bytes
        else:
            out = codegen_summary(self.image, self.plan_peak_bytes, self.result)
        p = self.project
        out.update(target=p.target, board=p.board if p.target != "host" else None, project=str(p.directory),
                   steps=p.config.steps, first_step=p.config.first_step, nodes_in_c=self.nodes,
                   state_bytes=p.config.state_bytes, scratch_bytes=self.scratch_bytes, band_bytes=self.band_bytes,
                   built=self.image is not None, toolchain_missing=self.toolchain_missing)
        return out


def check_target(target: str, board: str | None) -> str:
    """The board to use for ``target`` (its default when None); one line for a bad choice."""
    if target not in TARGETS:
        raise RctcError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    if target == "host":
        if board is not None:
            raise RctcError("--board is for --target cortex-m4; the host target has no board")
        return "mps2-an386"  # unused by a host build; the project keeps the default board files
    return board_named(board or "mps2-an386").name


def _tensors_by_size(prog: Any, region: str, aliases: set[str]) -> str:
    """The largest tensors of a block, views and in-place updates (``aliases``) left out."""
    sizes = sorted(((s.nbytes, name) for name, s in prog.slots.items() if s.region == region and name not in aliases),
                   key=lambda t: (-t[0], t[1]))
    return ", ".join(f"{name} {n} B" for n, name in sizes[:_SHOWN])


def _scratch_users(prog: Any) -> str:
    """The nodes of the largest scratch needs, one per op type."""
    seen: dict[str, tuple[int, str]] = {}
    for name, op, n in prog.scratch_nodes:
        if op not in seen or n > seen[op][0]:
            seen[op] = (n, name)
    top = sorted(((n, op, name) for op, (n, name) in seen.items()), key=lambda t: (-t[0], t[1]))
    return ", ".join(f"{op} {name} {n} B" for n, op, name in top[:_SHOWN])


def _explain(exc: DoesNotFit, prog: Any, graph: Any) -> DoesNotFit:
    """The link's overflow line plus the largest tensors of the state block and the arena, and
    the nodes that need the most scratch."""
    nodes = device_nodes(graph)
    aliases = set(views(nodes)) | set(in_place_updates(graph, nodes))
    scratch = _scratch_users(prog)
    return DoesNotFit(f"{exc}; largest state tensors: {_tensors_by_size(prog, 'state', aliases)}; largest arena "
                      f"tensors: {_tensors_by_size(prog, 'arena', aliases)}"
                      + (f"; largest scratch users: {scratch}" if scratch else "")
                      + f" (arena {prog.arena_bytes} B, state {prog.state_bytes} B, scratch {prog.scratch_bytes} B)")


def codegen(model_path: Path, out_dir: Path, *, target: str = "cortex-m4", board: str | None = None,
            data: str | None = None, x_key: str = "x", y_key: str = "y", target_column: str | None = None,
            steps: int = 1, seed: int | None = None, lr: float | None = None, do_run: bool = False,
            band_bytes: int | None = None, timeout: float = 600.0) -> CodegenResult:
    """Write the project for ``model_path`` into ``out_dir``; build it (and run it) when the toolchain is here."""
    from rctc.api import load
    from rctc.data import load_data
    from rctc.native.codegen.feeds import step_feeds
    from rctc.native.codegen.model import device_model, device_program, model_name

    board = check_target(target, board)
    if steps < 1:
        raise RctcError(f"--steps must be >= 1, got {steps}")
    if data is None:
        raise RctcError("give --data: the device trains on the first --steps x batch samples of it")
    if band_bytes is not None and band_bytes < MIN_BAND_BYTES:
        raise RctcError(f"--band-bytes must be >= {MIN_BAND_BYTES}, got {band_bytes}")
    m = load(model_path)
    prog = device_program(m.graph, band_bytes)
    first = int(m.graph.meta.get("step", 0))
    ds = load_data(data, x_key, y_key, target_column)
    feeds = step_feeds(m, ds.x, ds.y, steps, seed, lr, prog.inputs, ds.source)
    name = model_name(model_path)
    dm = device_model(m.graph, feeds, name, prog)
    config = ModelConfig(name, dm.arena_bytes, dm.state_bytes, steps, first)
    project = write_project(Path(out_dir).resolve(), dm.sources, dm.arrays, config, target=target, board=board,
                            stack_bytes=STACK_BYTES, host_x86=dm.host_only)
    plan = m.graph.meta.get("memory_plan", {}).get("arena_bytes")
    res = CodegenResult(project, len(device_nodes(m.graph)), plan, prog.scratch_bytes, band_bytes)
    problem = toolchain_problem(target, board, run=do_run and target == "cortex-m4")
    if problem is not None:
        res.toolchain_missing = problem
        return res
    try:
        res.image = build(project, timeout=timeout)
    except DoesNotFit as exc:
        raise _explain(exc, prog, m.graph) from None
    if res.image.float_helpers:
        raise RctcError(f"the {target} image links float helpers ({', '.join(res.image.float_helpers[:_SHOWN])}) "
                        "though the device step is integer only; see build/*/model.map in the project")
    if do_run:
        res.result = run(project, timeout=timeout)
    return res


def describe(res: CodegenResult) -> list[str]:
    """The human-readable report, one fact a line."""
    p = res.project
    where = p.target if p.target == "host" else f"{p.target}, board {p.board}"
    lines = [f"wrote {p.directory} ({where}): {p.config.steps} training steps of {p.config.name} from step "
             f"{p.config.first_step}, {res.nodes} nodes in C"]
    if res.toolchain_missing is not None:
        lines.append(f"not built: {res.toolchain_missing}; build it with `make -C {p.directory}` "
                     f"(and `make -C {p.directory} run`) once the tools are there")
        return lines
    img = res.image
    assert img is not None
    plan = "not in this .rct (recompile it)" if res.plan_peak_bytes is None else f"{res.plan_peak_bytes} B"
    mem = f"arena {img.arena_bytes} B (memory plan: {plan}), state {img.state_bytes} B, scratch {res.scratch_bytes} B"
    if img.flash_bytes is not None:
        lines.append(f"image {img.image}: flash {img.flash_bytes} B, RAM {img.ram_bytes} B ({mem}, stack "
                     f"{STACK_BYTES} B); no float helper linked")
    else:
        lines.append(f"image {img.image}: {mem}")
    if res.result is not None:
        r = res.result
        line = f"digest {r.digest_hex} after {r.steps} steps"
        if r.instructions_per_step is not None:
            line += f"; {r.instructions_per_step:.0f} instructions per step (QEMU -icount: emulated instructions, " \
                    "not time)"
        lines.append(line)
    return lines


__all__ = ["CodegenResult", "check_target", "codegen", "describe"]

"""Write one C file for a run of scheduled rct graph nodes: constant shapes, one static arena.

Needs: a compiled rct graph (rctc.compile(..., mode="rct", elementwise="integer")) and the nodes
to run, in the graph's schedule order; every op type must have an emitter in
:mod:`rctc.native.codegen.emit`, every value an integer dtype, else one UnsupportedOpError line
naming the op(s).

Leaves: a :class:`CProgram`: the C source and the byte offset of every value it touches.

Storage (all static, no malloc):
- ``rctc_state``: every stored value the nodes read (parameters, buffers, constants), laid out
  one after another at 64-byte alignment; the host writes them before a step and reads them back.
- ``rctc_arena``: every other value, placed by :func:`rctc.analysis.arena.layout` (liveness over
  these nodes, greedy by size at 64-byte alignment), the same function the memory plan sizes the
  device step's arena with: for the whole device step the two agree by construction. The
  output of a view op (Flatten, Reshape) gets no bytes of its own: it shares its input's slot.
- ``rctc_scratch``: per-node scratch (int64 widening, random words), sized to the largest need.
  Nodes that band or chunk their work (conv columns, fused conv updates, Requantize) do it at
  their minimum sizes first; then, with ``FILL_SCRATCH``, the step is emitted again with
  ``cx.budget`` = that block's size, so they use the bytes the largest node needs anyway (fewer,
  longer bands: the same bits), kept only if the block does not grow.
- ``rctc_stats``: the bitwidth controller's statistics of each update node that records them
  (rctc/bitwidth_rule.py), ``STATS_WORDS`` uint64 per node: A = sum |acc|, the saturated count S,
  the fixed-point Gavg g; in the order of ``CProgram.stats`` (parameter name, element count).
At the step's end each state value with an update produced by these nodes is overwritten by it.

Profiling: the step also records the monotonic time of each node block (``<prefix>_prof()``:
``len(nodes) + 1`` uint64 nanosecond counts of the last step, the last entry the state
write-back), compiled in only when the file defines ``RCTC_PROFILE`` before the step, as
:data:`PROFILE_PROLOGUE` does (:func:`rctc.native.codegen.runner.load_programs` with
``profile=True``); without it the lines are preprocessed away, so the normal and device builds
compile the same code.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rctc.analysis.arena import align, layout, step_arguments, streamed_layout, tensors, unread
from rctc.errors import UnsupportedOpError
from rctc.ir import Graph, Node, Value
from rctc.native.codegen.emit import ALIASES, EMITTERS, STEP_ARGS
from rctc.ops import RESHAPE_OPS

#: uint64 words per update node in rctc_stats: A, S, g
STATS_WORDS = 3


@dataclass(frozen=True)
class Slot:
    """Where a value lives: ``region`` ("state" or "arena"), byte ``offset``, dtype and shape."""

    region: str
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


@dataclass
class CProgram:
    """A generated step: source text, slots, the host-fed inputs, outputs and state updates."""

    source: str
    slots: dict[str, Slot]
    inputs: list[str]
    outputs: list[str]
    state: list[str]
    updates: dict[str, str] = field(default_factory=dict)
    arena_bytes: int = 0
    state_bytes: int = 0
    scratch_bytes: int = 0
    #: (parameter, element count) of each rctc_stats entry, in block order
    stats: list[tuple[str, int]] = field(default_factory=list)
    #: (node, op type, scratch bytes) of every node that uses scratch, in schedule order
    scratch_nodes: list[tuple[str, str, int]] = field(default_factory=list)
    prefix: str = "rctc_model"
    #: (node, op type) of every node, in step order: the entries of ``<prefix>_prof`` (then the write-back)
    nodes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def _check(nodes: Sequence[Node], args: frozenset[str]) -> None:
    missing = sorted({n.op_type for n in nodes if n.op_type not in EMITTERS})
    if missing:
        first = next(n for n in nodes if n.op_type in missing)
        raise UnsupportedOpError(
            f"native codegen: no C mapping for op(s) {', '.join(missing)} (first: node {first.name!r}); "
            "use the numpy backend for this model")
    for n in nodes:
        skip = {i for i in STEP_ARGS.get(n.op_type, ()) if i < len(n.inputs) and n.inputs[i] is not None}
        if skip != unread(n, args) or (n.op_type in ALIASES) != (n.op_type in RESHAPE_OPS):
            raise UnsupportedOpError(f"native codegen: node {n.name!r} ({n.op_type}): its emitter and the arena "
                                     "layout (rctc.analysis.arena) disagree on which inputs are tensors or "
                                     "views; use the numpy backend for this model")
        for v in tensors(n, args):
            if np.dtype(v.dtype).kind not in "iu":
                raise UnsupportedOpError(f"native codegen: node {n.name!r} ({n.op_type}) touches {v.name!r} of "
                                         f"dtype {np.dtype(v.dtype)} (the native step is integer only); "
                                         "use the numpy backend for this model")


def refusal(node: Node, training: bool = True) -> str | None:
    """Why ``node`` cannot be generated as C (one line), or None when it can: the checks of
    :func:`generate` and a trial emission (an emitter refuses attributes it does not map)."""
    args = frozenset(v.name for i, v in enumerate(node.inputs)
                     if v is not None and i in STEP_ARGS.get(node.op_type, ()))
    try:
        _check([node], args)
        slots = {v.name: Slot("arena", 0, np.dtype(v.dtype), tuple(v.shape)) for v in tensors(node, args)}
        EMITTERS[node.op_type](node, _Emit(slots, training))
    except UnsupportedOpError as exc:
        return str(exc)
    return None


class _Emit:
    def __init__(self, slots: dict[str, Slot], training: bool, band: int | None = None,
                 streamed: frozenset[str] = frozenset(), prefix: str = "rctc_model", tasks: bool = False) -> None:
        self.slots = slots
        self.streamed = streamed
        if band is not None:
            self.band = band
        self.prefix = prefix
        #: whether emitters may split a node over images on the step's threads (file-scope task
        #: functions, :meth:`helper`); the device step keeps every node on the calling thread
        self.tasks = tasks
        self.helpers: list[str] = []
        self.scratch_bytes = 0
        self.node_scratch = 0
        self.stat_params: list[tuple[str, int]] = []
        self.training = training
        self.threads = "rctc_nthreads"
        self.budget = 0

    def ptr(self, v: Value) -> str:
        s = self.slots[v.name]
        return f"((int{s.dtype.itemsize * 8}_t *)(rctc_{s.region} + {s.offset}))"

    def scalar(self, v: Value) -> str:
        return f"(*{self.ptr(v)})"

    def scratch(self, nbytes: int, offset: int = 0) -> str:
        self.scratch_bytes = max(self.scratch_bytes, align(offset + nbytes))
        self.node_scratch = max(self.node_scratch, align(offset + nbytes))
        return f"(rctc_scratch + {offset})" if offset else "rctc_scratch"

    def helper(self, params: str, body: list[str]) -> str:
        """A file-scope ``static void NAME(params)`` holding ``body`` (placed before the step,
        after the block macros, so it reads the same slots); returns its NAME."""
        name = f"{self.prefix}_task{len(self.helpers)}"
        self.helpers.append("\n".join([f"static void {name}({params})", "{", *[f"    {ln}" for ln in body], "}", ""]))
        return name

    def node_id(self, node: Node) -> int:
        return int(node.meta["node_id"])

    def stats(self, node: Node) -> str:
        q = node.inputs[0]
        self.stat_params.append((str(node.meta.get("param", q.name)), math.prod(q.shape)))
        return f"(rctc_stats + {STATS_WORDS * (len(self.stat_params) - 1)})"


#: prepended to a generated file to compile its steps' node timers (clock_gettime, POSIX)
PROFILE_PROLOGUE = "\n".join([
    "#define RCTC_PROFILE 1", "#define _POSIX_C_SOURCE 199309L", "#include <stdint.h>", "#include <time.h>",
    "static uint64_t rctc_prof_now(void)", "{", "    struct timespec ts;",
    "    clock_gettime(CLOCK_MONOTONIC, &ts);",
    "    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;", "}", ""])

#: emit a second time with the scratch block's size as the banded nodes' budget (module docstring)
FILL_SCRATCH = True


def _emit_body(nodes: Sequence[Node], slots: dict[str, Slot], training: bool, budget: int,
               band: int | None = None, streamed: frozenset[str] = frozenset(), prefix: str = "rctc_model",
               tasks: bool = False) -> tuple[_Emit, list[str], list[tuple[str, str, int]]]:
    """The step's node blocks emitted with ``budget`` (and ``band``), and each scratch user's need."""
    cx = _Emit(slots, training, band, streamed, prefix, tasks)
    cx.budget = budget
    body: list[str] = []
    scratch_nodes: list[tuple[str, str, int]] = []
    for i, n in enumerate(nodes):
        body.append(f"    /* {i}: {n.op_type} {n.name} (node id {n.meta['node_id']}) */")
        body.append("    {")
        cx.node_scratch = 0
        body += [f"        {line}" for line in EMITTERS[n.op_type](n, cx)]
        body.append("    }")
        body += ["#ifdef RCTC_PROFILE", f"    RCTC_PROF_MARK({i});", "#endif"]
        if cx.node_scratch:
            scratch_nodes.append((n.name, n.op_type, cx.node_scratch))
    return cx, body, scratch_nodes


def generate(graph: Graph, nodes: Sequence[Node], outputs: Sequence[str] = (), *, prefix: str = "rctc_model",
             training: bool = True, extern_blocks: bool = False, in_place_updates: bool = False,
             band_bytes: int | None = None, tasks: bool = False) -> CProgram:
    """The C source of one step over ``nodes``; ``outputs`` stay readable after the step.

    ``prefix`` names the program's functions (``<prefix>_step``, ``<prefix>_arena``,
    ``<prefix>_state``, ``<prefix>_stats``, ``<prefix>_set_threads``) and static blocks, so several
    programs can share one C file; ``training`` is the KernelContext flag the emitters see
    (``cx.training``); ``extern_blocks`` names the arena and state blocks ``rctc_arena`` and
    ``rctc_state`` with external linkage (a device project, one program, reads their sizes from
    the linked image); ``in_place_updates`` lets a parameter update write the state block directly
    where nothing reads the old value later (:func:`rctc.analysis.arena.layout`); ``band_bytes``
    replaces the banded nodes' smallest band (conv ``TILE_BYTES``, a fused update's gradient block
    twice that): smaller, the scratch block shrinks and the step costs more instructions; ``tasks``
    lets emitters split a node over images on the step's threads where the scratch budget holds a
    slot per thread (convolutions; the host backend's choice, the device step stays serial)."""
    nodes = list(nodes)
    args = step_arguments(graph)
    _check(nodes, args)
    produced = {o.name for n in nodes for o in n.outputs}
    outs = list(dict.fromkeys(outputs))
    for name in outs:
        if name not in produced:
            raise UnsupportedOpError(f"native codegen: output {name!r} is not computed by these nodes")
    # a device step (in place) streams the data gradients whose accumulators would raise its arena
    plan = (streamed_layout if in_place_updates else layout)(graph, nodes, outs, in_place=in_place_updates)
    values = {v.name: v for n in nodes for v in tensors(n, args)}
    slots = {nm: Slot(region, off, np.dtype(values[nm].dtype), tuple(values[nm].shape))
             for nm, (region, off) in plan.offsets.items()}
    updates, arena_bytes, state_bytes = plan.updates, plan.arena_bytes, plan.state_bytes
    cx, body, scratch_nodes = _emit_body(nodes, slots, training, 0, band_bytes, plan.streamed, prefix, tasks)
    if FILL_SCRATCH and cx.scratch_bytes:
        wide = _emit_body(nodes, slots, training, cx.scratch_bytes, band_bytes, plan.streamed, prefix, tasks)
        if wide[0].scratch_bytes <= cx.scratch_bytes:
            cx, body, scratch_nodes = wide
    for s, new in updates.items():
        if slots[new].region == "state" and slots[new].offset == slots[s].offset:
            body.append(f"    /* {s} <- {new}: updated in place */")
            continue
        body.append(f"    memcpy(rctc_state + {slots[s].offset}, rctc_{slots[new].region} + {slots[new].offset}, "
                    f"{slots[s].nbytes}u); /* {s} <- {new} */")
    body += ["#ifdef RCTC_PROFILE", f"    RCTC_PROF_MARK({len(nodes)});", "#endif"]
    words = max(1, -(-arena_bytes // 8))
    p = prefix
    arena_obj, state_obj = ("rctc_arena", "rctc_state") if extern_blocks else (f"{p}_arena_u", f"{p}_state_u")
    link = "" if extern_blocks else "static "
    src = "\n".join([
        f"/* Generated by rctc.native.codegen: {len(nodes)} nodes of {graph.meta.get('source', 'a graph')!s}. */",
        "#include <stddef.h>", "#include <stdint.h>", "#include <string.h>",
        '#include "rctc_update.h"', '#include "rctc_bitwidth.h"',
        '#include "rctc_kernels.h"', '#include "rctc_intops.h"', '#include "rctc_rng.h"', "",
        f"/* {p}: arena {arena_bytes} bytes, state {state_bytes} bytes */",
        "/* byte blocks, 8-byte aligned by the union (C99 has no _Alignas); each slot is only",
        "   ever accessed through its one element type, as in TFLM's and CMSIS-NN's arenas; a macro",
        "   below may name its own object, which it expands only once (C99 6.10.3.4) */",
        f"{link}union {{ int64_t align; unsigned char b[{words * 8}]; }} {arena_obj};",
        f"{link}union {{ int64_t align; unsigned char b[{max(8, align(state_bytes))}]; }} {state_obj};",
        *([f"static union {{ int64_t align; unsigned char b[{cx.scratch_bytes}]; }} {p}_scratch_u;"]
          if cx.scratch_bytes else []),
        f"static uint64_t {p}_stats_b[{max(1, STATS_WORDS * len(cx.stat_params))}];",
        f"static int {p}_nthreads = 1;",
        f"#define rctc_arena ({arena_obj}.b)", f"#define rctc_state ({state_obj}.b)",
        f"#define rctc_scratch ({p}_scratch_u.b)", f"#define rctc_stats ({p}_stats_b)",
        f"#define rctc_nthreads ({p}_nthreads)", "",
        "#ifdef RCTC_PROFILE", "/* nanoseconds of each node block in the last step, then the state write-back */",
        f"static uint64_t {p}_prof_b[{len(nodes) + 1}];", f"uint64_t *{p}_prof(void);",
        f"uint64_t *{p}_prof(void) {{ return {p}_prof_b; }}",
        f"#define RCTC_PROF_MARK(i) do {{ const uint64_t rctc_t = rctc_prof_now(); "
        f"{p}_prof_b[i] = rctc_t - rctc_prof_t; rctc_prof_t = rctc_t; }} while (0)",
        "#endif", "", *cx.helpers,
        f"void *{p}_arena(void);", f"void *{p}_state(void);", f"uint64_t *{p}_stats(void);",
        f"void {p}_set_threads(int n);",
        f"int {p}_step(uint64_t seed, uint32_t step, int64_t lr_m, int lr_k);", "",
        f"void *{p}_arena(void) {{ return rctc_arena; }}",
        f"void *{p}_state(void) {{ return rctc_state; }}",
        f"/* {len(cx.stat_params)} update statistics of {STATS_WORDS} words (A, S, g) */",
        f"uint64_t *{p}_stats(void) {{ return rctc_stats; }}",
        "/* threads the kernels may use (results never depend on it) */",
        f"void {p}_set_threads(int n) {{ {p}_nthreads = n < 1 ? 1 : n; }}", "",
        "/* One step at learning rate lr_m * 2^lr_k; returns 0, or a kernel's RCTC_IQ_E* code. */",
        f"int {p}_step(uint64_t seed, uint32_t step, int64_t lr_m, int lr_k)", "{",
        "#ifdef RCTC_PROFILE", "    uint64_t rctc_prof_t = rctc_prof_now();", "#endif",
        "    (void)seed;", "    (void)step;", "    (void)lr_m;", "    (void)lr_k;", *body, "    return 0;", "}",
        "#ifdef RCTC_PROFILE", "#undef RCTC_PROF_MARK", "#endif",
        "#undef rctc_arena", "#undef rctc_state", "#undef rctc_scratch", "#undef rctc_stats", "#undef rctc_nthreads",
        ""])
    return CProgram(src, slots, plan.inputs, outs, plan.state, updates, arena_bytes, state_bytes,
                    cx.scratch_bytes, list(cx.stat_params), prefix=prefix, scratch_nodes=scratch_nodes,
                    nodes=[(n.name, n.op_type) for n in nodes])

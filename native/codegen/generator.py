"""Write one C file for a run of scheduled rct graph nodes: constant shapes, one static arena.

Needs: a compiled rct graph (rctc.compile(..., mode="rct", elementwise="integer")) and the nodes
to run, in the graph's schedule order; every op type must have an emitter in
:mod:`rctc.native.codegen.emit`, every value an integer dtype, else one UnsupportedOpError line
naming the op(s).

Leaves: a :class:`CProgram`: the C source and the byte offset of every value it touches.

Storage (all static, no malloc):
- ``rctc_state``: every stored value the nodes read (parameters, buffers, constants), laid out
  one after another at 64-byte alignment; the host writes them before a step and reads them back.
- ``rctc_arena``: every other value. Own liveness plan (the graph's memory plan covers the whole
  step, so it does not fit a slice): a value lives from the node that writes it (the step's
  start for a value fed by the host) to its last reader (the step's end for a requested output);
  values are placed first-fit, by start, at 64-byte alignment, reusing the bytes of dead values.
  The output of a view op (``ALIASES``: Flatten, Reshape) gets no bytes of its own: it shares
  its input's slot (arena or state), whose life is extended to the view's last reader.
- ``rctc_scratch``: per-node scratch (int64 widening, random words), sized to the largest need.
- ``rctc_stats``: the bitwidth controller's statistics of each update node that records them
  (rctc/bitwidth_rule.py), ``STATS_WORDS`` uint64 per node: A = sum |acc|, the saturated count S,
  the fixed-point Gavg g; in the order of ``CProgram.stats`` (parameter name, element count).
At the step's end each state value with an update produced by these nodes is overwritten by it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rctc.errors import UnsupportedOpError
from rctc.ir import Graph, Node, Value
from rctc.native.codegen.emit import ALIASES, EMITTERS, STEP_ARGS
from rctc.native.codegen.emit import align as _align

#: uint64 words per update node in rctc_stats: A, S, g
STATS_WORDS = 3
_STORED = ("param", "buffer", "const")


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
    prefix: str = "rctc_model"
    #: (parameter, element count) of each rctc_stats entry, in block order
    stats: list[tuple[str, int]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def _check(nodes: Sequence[Node]) -> None:
    missing = sorted({n.op_type for n in nodes if n.op_type not in EMITTERS})
    if missing:
        first = next(n for n in nodes if n.op_type in missing)
        raise UnsupportedOpError(
            f"native codegen: no C mapping for op(s) {', '.join(missing)} (first: node {first.name!r}); "
            "use the numpy backend for this model")
    for n in nodes:
        for v in _tensors(n):
            if np.dtype(v.dtype).kind not in "iu":
                raise UnsupportedOpError(f"native codegen: node {n.name!r} ({n.op_type}) touches {v.name!r} of "
                                         f"dtype {np.dtype(v.dtype)} (the native step is integer only); "
                                         "use the numpy backend for this model")


def refusal(node: Node, training: bool = True) -> str | None:
    """Why ``node`` cannot be generated as C (one line), or None when it can: the checks of
    :func:`generate` and a trial emission (an emitter refuses attributes it does not map)."""
    try:
        _check([node])
        slots = {v.name: Slot("arena", 0, np.dtype(v.dtype), tuple(v.shape)) for v in _tensors(node)}
        EMITTERS[node.op_type](node, _Emit(slots, training))
    except UnsupportedOpError as exc:
        return str(exc)
    return None


def _tensors(n: Node) -> list[Value]:
    """The node's inputs and outputs that live in memory (not the step arguments, e.g. lr)."""
    skip = STEP_ARGS.get(n.op_type, ())
    return [v for i, v in enumerate(n.inputs) if v is not None and i not in skip] + list(n.outputs)


def _first_fit(lives: list[tuple[int, int, str, int]]) -> tuple[dict[str, int], int]:
    """Offsets for (start, end, name, nbytes) lifetimes: first fit among values still live."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, end, start)
    offsets: dict[str, int] = {}
    top = 0
    for start, end, name, size in sorted(lives, key=lambda t: (t[0], -t[3])):
        busy = sorted((o, s) for o, s, e, st in placed if e >= start)
        off = 0
        for o, s in busy:
            if off + size <= o:
                break
            off = max(off, _align(o + s))
        offsets[name] = off
        placed.append((off, size, end, start))
        top = max(top, _align(off + size))
    return offsets, top


class _Emit:
    def __init__(self, slots: dict[str, Slot], training: bool) -> None:
        self.slots = slots
        self.scratch_bytes = 0
        self.training = training
        self.threads = "rctc_nthreads"
        self.stat_params: list[tuple[str, int]] = []

    def ptr(self, v: Value) -> str:
        s = self.slots[v.name]
        return f"((int{s.dtype.itemsize * 8}_t *)(rctc_{s.region} + {s.offset}))"

    def scalar(self, v: Value) -> str:
        return f"(*{self.ptr(v)})"

    def scratch(self, nbytes: int, offset: int = 0) -> str:
        self.scratch_bytes = max(self.scratch_bytes, _align(offset + nbytes))
        return f"(rctc_scratch + {offset})" if offset else "rctc_scratch"

    def node_id(self, node: Node) -> int:
        return int(node.meta["node_id"])

    def stats(self, node: Node) -> str:
        q = node.inputs[0]
        self.stat_params.append((str(node.meta.get("param", q.name)), math.prod(q.shape)))
        return f"(rctc_stats + {STATS_WORDS * (len(self.stat_params) - 1)})"


def _alias_roots(nodes: Sequence[Node]) -> dict[str, str]:
    """Alias output -> the value whose bytes it shares (followed through chains of aliases)."""
    root: dict[str, str] = {}
    for n in nodes:
        if n.op_type in ALIASES:
            src, out = n.inputs[0], n.outputs[0]
            if np.dtype(src.dtype) != np.dtype(out.dtype) or math.prod(src.shape) != math.prod(out.shape):
                raise UnsupportedOpError(f"native codegen: node {n.name!r} ({n.op_type}) changes the dtype or "
                                         "size of the value it views; use the numpy backend for this model")
            root[out.name] = root.get(src.name, src.name)
    return root


def generate(graph: Graph, nodes: Sequence[Node], outputs: Sequence[str] = (), *, prefix: str = "rctc_model",
             training: bool = True) -> CProgram:
    """The C source of one step over ``nodes``; ``outputs`` stay readable after the step.

    ``prefix`` names the program's functions (``<prefix>_step``, ``<prefix>_arena``,
    ``<prefix>_state``, ``<prefix>_set_threads``) and static blocks, so several programs can
    share one C file; ``training`` is the KernelContext flag the emitters see (``cx.training``)."""
    nodes = list(nodes)
    _check(nodes)
    produced = {o.name: i for i, n in enumerate(nodes) for o in n.outputs}
    last: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for v in _tensors(n):
            if v.name not in produced or produced[v.name] != i:
                last[v.name] = i
    end = len(nodes)
    outs = list(dict.fromkeys(outputs))
    for name in outs:
        if name not in produced:
            raise UnsupportedOpError(f"native codegen: output {name!r} is not computed by these nodes")
    updates = {s: new for s, new in graph.state_updates.items() if new in produced}
    values = {v.name: v for n in nodes for v in _tensors(n)}
    state = [nm for nm, v in values.items() if v.kind in _STORED or nm in updates]
    inputs = [nm for nm in values if nm not in produced and nm not in state]
    slots: dict[str, Slot] = {}
    off = 0
    for nm in state:
        v = values[nm]
        slots[nm] = Slot("state", off, np.dtype(v.dtype), tuple(v.shape))
        off = _align(off + slots[nm].nbytes)
    state_bytes = off
    root = _alias_roots(nodes)
    stops: dict[str, int] = {}
    for nm in values:
        start = -1 if nm in inputs else produced.get(nm, -1)
        stop = end if nm in outs or nm in updates.values() else last.get(nm, start)
        r = root.get(nm, nm)
        stops[r] = max(stops.get(r, stop), stop)
    lives = []
    for nm, v in values.items():
        if nm in state or nm in root:
            continue
        start = -1 if nm in inputs else produced[nm]
        lives.append((start, stops[nm], nm, max(1, np.dtype(v.dtype).itemsize * math.prod(v.shape))))
    offsets, arena_bytes = _first_fit(lives)
    for _, _, nm, _ in lives:
        v = values[nm]
        slots[nm] = Slot("arena", offsets[nm], np.dtype(v.dtype), tuple(v.shape))
    for nm, r in root.items():
        slots[nm] = Slot(slots[r].region, slots[r].offset, np.dtype(values[nm].dtype), tuple(values[nm].shape))
    cx = _Emit(slots, training)
    body: list[str] = []
    for i, n in enumerate(nodes):
        body.append(f"    /* {i}: {n.op_type} {n.name} (node id {n.meta['node_id']}) */")
        body.append("    {")
        body += [f"        {line}" for line in EMITTERS[n.op_type](n, cx)]
        body.append("    }")
    for s, new in updates.items():
        body.append(f"    memcpy(rctc_state + {slots[s].offset}, rctc_{slots[new].region} + {slots[new].offset}, "
                    f"{slots[s].nbytes}u); /* {s} <- {new} */")
    words = max(1, -(-arena_bytes // 8))
    p = prefix
    src = "\n".join([
        f"/* Generated by rctc.native.codegen: {len(nodes)} nodes of {graph.meta.get('source', 'a graph')!s}. */",
        "#include <stddef.h>", "#include <stdint.h>", "#include <string.h>",
        '#include "rctc_update.h"', '#include "rctc_bitwidth.h"',
        '#include "rctc_kernels.h"', '#include "rctc_intops.h"', '#include "rctc_rng.h"', "",
        f"/* {p}: arena {arena_bytes} bytes, state {state_bytes} bytes */",
        "/* byte blocks, 8-byte aligned by the union (C99 has no _Alignas); each slot is only",
        "   ever accessed through its one element type, as in TFLM's and CMSIS-NN's arenas */",
        f"static union {{ int64_t align; unsigned char b[{words * 8}]; }} {p}_arena_u;",
        f"static union {{ int64_t align; unsigned char b[{max(8, _align(state_bytes))}]; }} {p}_state_u;",
        *([f"static union {{ int64_t align; unsigned char b[{cx.scratch_bytes}]; }} {p}_scratch_u;"]
          if cx.scratch_bytes else []),
        f"static int {p}_nthreads = 1;",
        f"static uint64_t {p}_stats_b[{max(1, STATS_WORDS * len(cx.stat_params))}];",
        f"#define rctc_arena ({p}_arena_u.b)", f"#define rctc_state ({p}_state_u.b)",
        f"#define rctc_scratch ({p}_scratch_u.b)", f"#define rctc_nthreads ({p}_nthreads)",
        f"#define rctc_stats ({p}_stats_b)", "",
        f"void *{p}_arena(void);", f"void *{p}_state(void);", f"uint64_t *{p}_stats(void);",
        f"void {p}_set_threads(int n);",
        f"int {p}_step(uint64_t seed, uint32_t step, int64_t lr_m, int lr_k);", "",
        f"void *{p}_arena(void) {{ return {p}_arena_u.b; }}",
        f"void *{p}_state(void) {{ return {p}_state_u.b; }}",
        f"/* {len(cx.stat_params)} update statistics of {STATS_WORDS} words (A, S, g) */",
        f"uint64_t *{p}_stats(void) {{ return {p}_stats_b; }}",
        "/* threads the kernels may use (results never depend on it) */",
        f"void {p}_set_threads(int n) {{ {p}_nthreads = n < 1 ? 1 : n; }}", "",
        "/* One step at learning rate lr_m * 2^lr_k; returns 0, or a kernel's RCTC_IQ_E* code. */",
        f"int {p}_step(uint64_t seed, uint32_t step, int64_t lr_m, int lr_k)", "{",
        "    (void)seed;", "    (void)step;", "    (void)lr_m;", "    (void)lr_k;", *body, "    return 0;", "}",
        "#undef rctc_arena", "#undef rctc_state", "#undef rctc_scratch", "#undef rctc_nthreads",
        "#undef rctc_stats", ""])
    return CProgram(src, slots, inputs, outs, state, updates, arena_bytes, state_bytes, prefix, list(cx.stat_params))

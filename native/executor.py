"""The native backend's executor: a step's C segments as generated C, its host segments on numpy.

Needs: a compiled graph and a C compiler (rctc.native.build). The native backend imports the
numpy runtime (its kernels run the host segments, its ``Executor`` gives the schedule and the
value environment); rctc.runtime never imports rctc.native.

Leaves: :class:`NativeExecutor`, an :class:`~rctc.runtime.executor.Executor` whose ``run`` (and
so ``train_step``) computes the same bits as the numpy one. Per requested output set and
training flag, the schedule is partitioned once (:mod:`rctc.native.partition`); every C segment
becomes one generated program, all programs of the schedule share one C file, built once and
cached. Values crossing a segment boundary are copied (host arrays in, C slots out). State stays
in each program's state block across steps: a stored value is copied in only when its ``Value.data``
is not the array the program last saw (the runtime replaces ``Value.data``, never writes it in
place; the arrays this executor hands back for state updates are read-only to keep it so), and
written back to the graph after every step, so checkpoints, the controller, eval and the numpy
backend always see the current state.

``on_node`` callbacks (the energy counter) see every node: host nodes with their arrays, C nodes
with read-only stand-ins of the same shapes and dtypes (the counters read only those).
``op_times`` (``--profile-ops``) times every node by op type: host nodes as the numpy executor
does, C nodes by the generated step's own monotonic clock (a profiling build of the programs,
``load_programs(..., profile=True)``: a separate shared object, built when ``op_times`` is set at
a plan's first use), and what a segment spends outside its nodes (copies in and out, the call,
the state write-back) as ``C segment boundary``. ``node_times`` (when not None) gets the same
times per C node name. The profiling build computes the same bits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rctc.bitwidth_rule import UpdateStat, mean_abs_update
from rctc.errors import RctcError
from rctc.ir import Graph, Node
from rctc.native.codegen import CProgram, NativeStep, generate
from rctc.native.codegen.runner import load_programs
from rctc.native.partition import partition
from rctc.runtime.executor import Executor, OnNode, Step
from rctc.runtime.kernels import KernelContext
from rctc.runtime.kernels.int_update import acc_scale, record_stats_rows

#: (library handle, program prefix) -> the segment whose state the program's static blocks hold now:
#: two executors of the same graph load the same cached shared object, so they share its blocks
_OWNER: dict[tuple[int, str], Any] = {}


#: op types whose emitter writes the controller statistics (A, S, g) into the step's stats block:
#: input position of the parameter's exponent and of the product's exponents (the update is
#: ``u = acc * -lr * 2^(sum of those - e)``), from which the logged float Gavg is formed exactly
C_STATS: dict[str, tuple[int, tuple[int, ...]]] = {"FusedIntUpdate": (1, (4, 6)), "IntAccSGDUpdate": (1, (4,))}
#: updates whose C kernel returns A on a fixed grid: the float Gavg of the log is A * 2^-28 / n
#: (rct AdamW's step, runtime/intref/adamw.py)
C_STATS_FIXED: dict[str, int] = {"FusedIntAdamWUpdate": -28, "IntAccAdamWUpdate": -28,
                                  "FusedIntMomentumUpdate": -28, "IntAccMomentumUpdate": -28}


def default_threads() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class _CSegment:
    """One generated program and how its values reach the host environment."""

    step: NativeStep
    nodes: list[Node]
    lr: str | None  # the value read as the learning rate step argument
    free: tuple[str, ...]  # values dead after the segment
    standins: list[tuple[Node, list[Any], Any]]  # on_node arguments of each node
    synced: dict[str, Any] = field(default_factory=dict)  # state name -> the array the block holds
    name: str = ""
    threads: int = 1
    stat_nodes: list[Node] = field(default_factory=list)  # the update node of each stats entry
    host_steps: list[Step] = field(default_factory=list)  # the same nodes on the numpy kernels
    fallbacks: int = 0  # steps this segment ran on the numpy kernels (a C kernel refused)
    io: _SegmentIO | None = None  # resolved at the first run (_segment_io)

    def claim(self) -> None:
        """Make the program's blocks this segment's (reload all state if another segment had them)."""
        key = (id(self.step.lib), self.step.prog.prefix)
        if _OWNER.get(key) is not self:
            self.synced.clear()
            self.step.set_threads(self.threads)
            _OWNER[key] = self


@dataclass
class _StatRow:
    """How one C-recorded update's statistics become ``ctx.stats`` entries (resolved once)."""

    param: str
    n: int
    fixed: float | None  # the update's A grid (C_STATS_FIXED), else None: the scale from the exponents
    #: (value, sign) of the exponents whose sum is the update's shift: the product's (+1), the parameter's (-1)
    terms: tuple[tuple[str, int], ...] = ()
    alpha: float = 1.0
    key: tuple[float, int] | None = None  # (lr32, shift) of the last step's scale
    scale: float = 0.0


@dataclass
class _SegmentIO:
    """A segment's per-step data movement, resolved once: (name, Value, slot view) of each stored
    value, (name, slot view) of each input and output, the statistics rows."""

    state: list[tuple[str, Any, np.ndarray]]
    inputs: list[tuple[str, np.ndarray]]
    outputs: list[tuple[str, np.ndarray]]
    stats: list[_StatRow]
    free: tuple[str, ...]  # the segment's dead values that can be in the environment


@dataclass
class _Plan:
    parts: list[Step | _CSegment]  # host steps and C segments in execution order
    param_order: dict[str, int]  # update node's parameter -> its position in the numpy schedule
    c_nodes: int = 0
    nodes: int = 0
    #: the parameter order of a statistics table -> the numpy schedule's order of it (or the same tuple)
    stats_order: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)


def _standin(v: Any) -> np.ndarray:
    """A read-only array of ``v``'s shape and dtype that holds no memory of its own."""
    return np.broadcast_to(np.zeros((), v.dtype), tuple(v.shape))


class NativeExecutor(Executor):
    """Runs a graph's schedules natively where the code generator maps their nodes (see module)."""

    def __init__(self, graph: Graph, threads: int | None = None, env: dict[str, str] | None = None) -> None:
        super().__init__(graph)
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self.env = env
        self._plans: dict[tuple[tuple[str, ...], bool, bool], _Plan] = {}
        #: seconds per C node name while profiling (set to a dict to record them)
        self.node_times: dict[str, float] | None = None

    # ----- planning -----------------------------------------------------------------------
    def plan_for(self, outputs: Sequence[str], training: bool) -> _Plan:
        """The partitioned schedule of ``outputs`` (built, compiled and loaded once)."""
        key = (tuple(outputs), bool(training), self.op_times is not None)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._make_plan(list(outputs), bool(training), len(self._plans), key[2])
        return plan

    def _make_plan(self, outputs: list[str], training: bool, index: int, profile: bool = False) -> _Plan:
        nodes = self.nodes_for(outputs)
        segments = partition(nodes, training, frozenset(C_STATS) | frozenset(C_STATS_FIXED))
        order = [n for s in segments for n in s.nodes]
        steps = self.plan(order, outputs)
        readers: dict[str, int] = {}
        for i, n in enumerate(order):
            for v in n.inputs:
                if v is not None:
                    readers[v.name] = i
        keep = set(outputs)
        progs: list[tuple[CProgram, list[Node], tuple[str, ...], int, list[Step]]] = []
        layout: list[Any] = []
        pos = 0
        for seg in segments:
            end = pos + len(seg.nodes)
            if seg.kind == "host":
                layout.extend(steps[pos:end])
            else:
                made = [o.name for n in seg.nodes for o in n.outputs]
                # the exponents of C-recorded statistics stay readable (the logged Gavg needs them)
                exps = {n.inputs[i].name for n in seg.nodes if n.op_type in C_STATS
                        for i in (C_STATS[n.op_type][0], *C_STATS[n.op_type][1])}
                out = [nm for nm in made if nm in keep or nm in exps or readers.get(nm, -1) >= end]
                prog = generate(self.graph, seg.nodes, out, prefix=f"rctc_p{index}s{len(progs)}", training=training,
                                tasks=True)
                free = tuple(nm for st in steps[pos:end] for nm in st.free_after)
                layout.append(len(progs))
                progs.append((prog, seg.nodes, free, len(layout) - 1, steps[pos:end]))
            pos = end
        parts: list[Step | _CSegment] = list(layout)
        if progs:
            lib = load_programs([p for p, *_ in progs], self.env, profile=profile)
            for k, (prog, seg_nodes, free, at, host_steps) in enumerate(progs):
                step = NativeStep(prog, {}, lib=lib)  # the state is copied in at each segment's first run
                by_param = {str(n.meta.get("param", n.inputs[0].name)): n for n in seg_nodes
                            if n.op_type in C_STATS or n.op_type in C_STATS_FIXED}
                parts[at] = _CSegment(step, seg_nodes, self._lr_input(seg_nodes), free, self._standins(seg_nodes),
                                      name=f"C segment {k} ({len(seg_nodes)} nodes)", threads=self.threads,
                                      stat_nodes=[by_param[param] for param, _ in prog.stats],
                                      host_steps=host_steps)
        param_order = {str(n.meta.get("param", n.name)): i for i, n in enumerate(nodes)}
        c_nodes = sum(len(s.nodes) for s in segments if s.kind == "c")
        return _Plan(parts, param_order, c_nodes, len(nodes))

    def _lr_input(self, nodes: list[Node]) -> str | None:
        """The learning rate's value name when the segment reads it (as the step's lr argument)."""
        lr = self.graph.meta.get("lr_input")
        return lr if any(v is not None and v.name == lr for n in nodes for v in n.inputs) else None

    @staticmethod
    def _standins(nodes: list[Node]) -> list[tuple[Node, list[Any], Any]]:
        out = []
        for n in nodes:
            args = [None if v is None else _standin(v) for v in n.inputs]
            res = tuple(_standin(o) for o in n.outputs)
            out.append((n, args, res if len(res) > 1 else res[0]))
        return out

    def prepare(self, outputs: Sequence[str], training: bool = True) -> None:
        """Partition, generate, build and load the schedule of ``outputs`` now."""
        self.plan_for(outputs, training)

    # ----- running ------------------------------------------------------------------------
    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        ctx: KernelContext | None = None,
        on_node: OnNode | None = None,
    ) -> dict[str, np.ndarray]:
        """Compute ``outputs`` as the numpy Executor does, the mapped nodes in C."""
        ctx = ctx or KernelContext()
        plan = self.plan_for(outputs, ctx.training)
        env = self.environment(feeds)
        host: list[Step] = []
        for part in plan.parts:
            if isinstance(part, _CSegment):
                if host:
                    self.execute(host, env, ctx, on_node)
                    host = []
                self._run_segment(part, env, ctx, on_node)
            else:
                host.append(part)
        if host:
            self.execute(host, env, ctx, on_node)
        self._restore_stats_order(ctx, plan)
        return {o: env[o] for o in outputs}

    def _run_segment(self, seg: _CSegment, env: dict[str | None, Any], ctx: KernelContext,
                     on_node: OnNode | None) -> None:
        step, prog = seg.step, seg.step.prog
        t0 = time.perf_counter() if self.op_times is not None else 0.0
        seg.claim()
        io = seg.io or self._segment_io(seg)
        synced = seg.synced
        for name, value, view in io.state:
            data = value.data
            if synced.get(name) is not data:
                view[...] = data
                synced[name] = data
        for name, view in io.inputs:
            view[...] = env[name]
        lr = float(env[seg.lr]) if seg.lr is not None else 0.0
        try:
            step.call(ctx.seed, ctx.step, lr)
        except RctcError:
            # a kernel refused its operands (a domain the C does not cover, e.g. an update's scale
            # below 2^-53): this step's segment runs on the numpy kernels instead (the C step
            # returns before it touches the state block), which name the node if they refuse too
            seg.fallbacks += 1
            self.execute(seg.host_steps, env, ctx, on_node)
            return
        for name, view in io.outputs:
            env[name] = view.copy()
        if io.stats:
            self._record_stats(seg, env, ctx, lr)
        for state, new in prog.updates.items():
            arr = env.get(new)
            if arr is None:  # an update nobody asked for: the block holds it, the graph does not
                seg.synced.pop(state, None)
                continue
            arr.flags.writeable = False
            seg.synced[state] = arr  # the array train_step writes back as the state's new data
        if self.op_times is not None:
            self._record_times(seg, time.perf_counter() - t0)
        if on_node is not None:
            for node, args, res in seg.standins:
                on_node(node, args, res, env)
        for name in io.free:
            env.pop(name, None)

    def _record_times(self, seg: _CSegment, total: float) -> None:
        """The segment's node times by op type (and node name), the rest as its boundary."""
        ns = seg.step.node_ns()
        times = self.op_times
        assert times is not None
        inside = 0.0
        if ns is not None:
            names = self.node_times
            for (name, op), t in zip(seg.step.prog.nodes, ns[:-1] * 1e-9):
                times[op] = times.get(op, 0.0) + t
                if names is not None:
                    names[name] = names.get(name, 0.0) + t
                inside += t
        times["C segment boundary"] = times.get("C segment boundary", 0.0) + total - inside

    def _record_stats(self, seg: _CSegment, env: dict[str | None, Any], ctx: KernelContext, lr: float) -> None:
        """The C step's update statistics into ``ctx.stats``, as the numpy kernels record them."""
        values, get = self.graph.values, env.get
        lr32 = float(np.float32(lr))
        out = []
        assert seg.io is not None
        for row, (a, s, g) in zip(seg.io.stats, seg.step.stat_words()):
            scale = row.fixed
            if scale is None:
                shift = 0
                for name, sign in row.terms:  # the product's exponents minus the parameter's
                    v = get(name)
                    shift += sign * int(values[name].data if v is None else v)
                if row.key != (lr32, shift):  # the exponents and the rate change rarely: the scale is kept
                    row.key, row.scale = (lr32, shift), acc_scale(lr32, row.alpha, shift)
                scale = row.scale
            out.append((row.param, UpdateStat(g, s, row.n), mean_abs_update(a, scale, row.n)))
        record_stats_rows(ctx, out)

    def _segment_io(self, seg: _CSegment) -> _SegmentIO:
        """Resolve (once) the slot views, stored values and statistics rows ``seg`` moves every step."""
        step, prog, values = seg.step, seg.step.prog, self.graph.values
        rows = []
        for node, (param, n) in zip(seg.stat_nodes, prog.stats):
            if node.op_type in C_STATS_FIXED:
                rows.append(_StatRow(param, n, 2.0 ** C_STATS_FIXED[node.op_type]))
                continue
            e_at, prod_at = C_STATS[node.op_type]
            terms = (*((node.inputs[i].name, 1) for i in prod_at), (node.inputs[e_at].name, -1))
            rows.append(_StatRow(param, n, None, terms, float(node.attrs.get("alpha", 1.0))))
        # the environment holds stored values, feeds and what segments hand on; the values the C
        # program keeps to itself never enter it
        can_be = {*prog.inputs, *prog.outputs, *(v.name for v in values.values() if v.kind != "temp")}
        seg.io = _SegmentIO([(name, values[name], step.view(name)) for name in prog.state],
                            [(name, step.view(name)) for name in prog.inputs],
                            [(name, step.view(name)) for name in prog.outputs], rows,
                            tuple(name for name in seg.free if name in can_be))
        return seg.io

    @staticmethod
    def _restore_stats_order(ctx: KernelContext, plan: _Plan) -> None:
        """Per-parameter statistics in the numpy schedule's order (host nodes may run reordered);
        the order a table arrives in is the same every step, so its sorted order is looked up."""
        order, known = plan.param_order, plan.stats_order
        for key, val in ctx.stats.items():
            if isinstance(val, dict) and len(val) > 1:
                have = tuple(val)
                want = known.get(have)
                if want is None:
                    want = known[have] = tuple(sorted(have, key=order.__getitem__)) \
                        if all(k in order for k in have) else have
                if want != have:
                    ctx.stats[key] = {k: val[k] for k in want}

    def fallbacks(self) -> int:
        """Segment runs so far that a C kernel refused and the numpy kernels did instead."""
        return sum(p.fallbacks for plan in self._plans.values() for p in plan.parts if isinstance(p, _CSegment))

    def schedules(self) -> list[tuple[tuple[str, ...], bool]]:
        """``(outputs, training)`` of every schedule planned so far (profiled ones once)."""
        return list(dict.fromkeys((outputs, training) for outputs, training, _ in self._plans))

    def share_in_c(self, outputs: Sequence[str], training: bool = True) -> tuple[int, int]:
        """(nodes run in C, nodes in the schedule) of ``outputs``."""
        plan = self.plan_for(outputs, training)
        return plan.c_nodes, plan.nodes

"""Executes a scheduled IR graph with a value environment.

The schedule (which nodes, in which order, which values die after each node) is built
once per requested output set, so a training step does no graph work in Python beyond
calling kernels. Persistent state (parameters, buffers) lives in ``Value.data``; after a
training step the values named in ``graph.state_updates`` are written back. An optional
``on_node(node, args, result, env)`` callback sees every executed node (the energy counters
use it); it runs after the node's outputs enter ``env`` and before dead values leave it.

Without a callback and without op timing (``op_times``) a step runs a leaner loop (inputs
fetched by one ``itemgetter`` per node, no per-node checks): on small models the per-node
Python work is a visible part of the step. Both loops run the same kernels in the same order.
"""

from __future__ import annotations

import ctypes
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rctc.errors import RctcError
from rctc.ir import Graph, Node
from rctc.runtime.kernels import KERNELS, KernelContext

OnNode = Callable[[Node, list, Any, Mapping[str, Any]], None]


def _keep_freed_memory() -> None:
    """Let glibc keep freed large blocks for reuse instead of returning them to the OS.

    A training step allocates and frees the same large temporaries every step; by default glibc
    serves each one with a fresh mmap, and touching fresh pages costs about as much as the
    arithmetic on them. Raising the mmap and trim thresholds (once per process; a no-op where
    ``mallopt`` is unavailable) makes the second step reuse the first step's memory. The peak
    resident size is unchanged: it is the same high-water mark, only kept.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum (larger arrays are still mmapped)
    mallopt(m_trim_threshold, 1 << 30)


_MALLOC_TUNED = False


class KernelError(RctcError):
    """A kernel raised; the message names the node, its op type and input shapes."""


def _kernel_error(node: Node, args: Sequence[Any], exc: Exception) -> KernelError:
    shapes = ", ".join("None" if a is None else f"{a.dtype}{list(np.shape(a))}" for a in args)
    return KernelError(f"node {node.name!r} ({node.op_type}) failed on inputs ({shapes}): {type(exc).__name__}: {exc}")


@dataclass
class _Step:
    node: Node
    kernel: object
    in_names: tuple[str | None, ...]
    out_names: tuple[str, ...]
    free_after: tuple[str, ...]


# the fast loop's form of a step: (kernel, node, fetch inputs from env, output name(s), names to free)
_Plan = list[tuple[Any, Node, Callable[[dict], tuple], "str | tuple[str, ...]", tuple[str, ...]]]


def _fetcher(names: tuple[str | None, ...]) -> Callable[[dict], tuple]:
    """``env -> tuple of the inputs`` (an omitted optional input, name None, is looked up as the
    key None, which the fast loop's environment maps to None)."""
    if len(names) == 1:
        name = names[0]
        return lambda env: (env[name],)
    if not names:
        return lambda env: ()
    return operator.itemgetter(*names)


class Executor:
    """Runs (parts of) a graph. One Executor per graph; schedules are cached."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._schedules: dict[tuple[str, ...], list[_Step]] = {}
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._updates: dict[tuple[str, ...], tuple[list[str], list[tuple[Any, str]]]] = {}
        self.op_times: dict[str, float] | None = None
        _keep_freed_memory()
        # constants and state: their Value objects (the data is read each run; the set of values
        # is fixed once a graph is compiled)
        self._stored = [v for v in graph.values.values() if v.kind not in ("temp", "input")]
        missing = sorted({n.op_type for n in graph.nodes if n.op_type not in KERNELS})
        if missing:
            raise RctcError(f"no runtime kernel for op(s): {', '.join(missing)}; this .rct needs a newer rctc")

    def schedule(self, outputs: Sequence[str]) -> list[_Step]:
        key = tuple(outputs)
        if key in self._schedules:
            return self._schedules[key]
        g = self.graph
        needed = g.ancestors([g.value(o) for o in outputs])
        nodes = [n for n in g.nodes if n.name in needed]
        keep = set(outputs)
        # each value dies after its last reader; outputs nobody reads (optional BN stats) right away
        free_at: dict[int, list[str]] = {}
        for name, (_, end) in g.live_ranges(nodes).items():
            if name not in keep:
                free_at.setdefault(end, []).append(name)
        steps = [
            _Step(
                n,
                KERNELS[n.op_type],
                tuple(v.name if v is not None else None for v in n.inputs),
                tuple(o.name for o in n.outputs),
                tuple(free_at.get(i, [])),
            )
            for i, n in enumerate(nodes)
        ]
        self._schedules[key] = steps
        return steps

    def _plan(self, outputs: Sequence[str]) -> _Plan:
        key = tuple(outputs)
        plan = self._plans.get(key)
        if plan is None:
            plan = [(s.kernel, s.node, _fetcher(s.in_names), s.out_names[0] if len(s.out_names) == 1 else s.out_names,
                     s.free_after) for s in self.schedule(outputs)]
            self._plans[key] = plan
        return plan

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        ctx: KernelContext | None = None,
        on_node: OnNode | None = None,
    ) -> dict[str, np.ndarray]:
        """Compute ``outputs`` from ``feeds`` plus the graph's constants and state."""
        ctx = ctx or KernelContext()
        env: dict[str | None, Any] = {v.name: v.data for v in self._stored}
        env.update(feeds)
        if on_node is None and self.op_times is None:
            self._run_fast(env, outputs, ctx)
        else:
            self._run_observed(env, outputs, ctx, on_node)
        return {o: env[o] for o in outputs}

    def _run_fast(self, env: dict[str | None, Any], outputs: Sequence[str], ctx: KernelContext) -> None:
        """The plain loop (no timing, no callback): the per-node work is the kernel call."""
        env[None] = None  # an omitted optional input
        pop = env.pop
        for kernel, node, fetch, outs, free in self._plan(outputs):
            args = fetch(env)
            try:
                result = kernel(ctx, node, *args)
            except RctcError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised with the node named
                raise _kernel_error(node, args, exc) from exc
            if outs.__class__ is str:
                env[outs] = result[0] if isinstance(result, tuple) else result
            else:
                env.update(zip(outs, result))
            for name in free:
                pop(name, None)

    def _run_observed(self, env: dict[str | None, Any], outputs: Sequence[str], ctx: KernelContext,
                      on_node: OnNode | None) -> None:
        """The loop with per-op-type wall times (``op_times``) and/or the ``on_node`` callback."""
        timing = self.op_times
        for step in self.schedule(outputs):
            args = [env[n] if n is not None else None for n in step.in_names]
            t0 = time.perf_counter() if timing is not None else 0.0
            try:
                result = step.kernel(ctx, step.node, *args)
            except RctcError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised with the node named
                raise _kernel_error(step.node, args, exc) from exc
            if timing is not None:
                timing[step.node.op_type] = timing.get(step.node.op_type, 0.0) + time.perf_counter() - t0
            if len(step.out_names) == 1:
                env[step.out_names[0]] = result if not isinstance(result, tuple) else result[0]
            else:
                for name, arr in zip(step.out_names, result):
                    env[name] = arr
            if on_node is not None:
                on_node(step.node, args, result, env)
            for name in step.free_after:
                env.pop(name, None)

    def train_step(
        self,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        ctx: KernelContext,
        guard: Callable[[dict[str, np.ndarray]], None] | None = None,
        on_node: OnNode | None = None,
    ) -> dict[str, np.ndarray]:
        """Run one training step: compute ``outputs`` and every state update, then write state back.

        ``guard`` sees the outputs first and may raise to leave the state untouched.
        """
        key = tuple(outputs)
        cached = self._updates.get(key)
        if cached is None:  # the state updates are fixed once a graph is compiled (like the stored values)
            updates = self.graph.state_updates
            cached = (list(dict.fromkeys(list(outputs) + list(updates.values()))),
                      [(self.graph.values[state], new) for state, new in updates.items()])
            self._updates[key] = cached
        wanted, write_back = cached
        result = self.run(feeds, wanted, ctx, on_node)
        if guard is not None:
            guard(result)
        for value, new in write_back:
            value.data = result[new]
        return {o: result[o] for o in outputs}

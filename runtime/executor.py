"""Executes a scheduled IR graph with a value environment.

The schedule (which nodes, in which order, which values die after each node) is built
once per requested output set, so a training step does no graph work in Python beyond
calling kernels. Persistent state (parameters, buffers) lives in ``Value.data``; after a
training step the values named in ``graph.state_updates`` are written back. An optional
``on_node(node, args, result, env)`` callback sees every executed node (the energy counters
use it); it runs after the node's outputs enter ``env`` and before dead values leave it.

On small models the per-node Python work is a visible part of the step, so a schedule step
carries everything resolved once: the kernel, an ``itemgetter`` that fetches its inputs, its
output name(s) and the values that die after it.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from rctc.errors import RctcError
from rctc.ir import Graph, Node
from rctc.runtime.kernels import KERNELS, KernelContext

OnNode = Callable[[Node, list, Any, Mapping[str, Any]], None]


class KernelError(RctcError):
    """A kernel raised; the message names the node, its op type and input shapes."""


def _kernel_error(node: Node, args: Sequence[Any], exc: Exception) -> KernelError:
    shapes = ", ".join("None" if a is None else f"{a.dtype}{list(np.shape(a))}" for a in args)
    return KernelError(f"node {node.name!r} ({node.op_type}) failed on inputs ({shapes}): {type(exc).__name__}: {exc}")


class Step(NamedTuple):
    """One scheduled node, resolved once per requested output set."""

    kernel: Any
    node: Node
    fetch: Callable[[dict], tuple]  # env -> the node's inputs
    outs: str | tuple[str, ...]  # one output name, or several
    free_after: tuple[str, ...]


def _fetcher(names: tuple[str | None, ...]) -> Callable[[dict], tuple]:
    """``env -> tuple of the inputs`` (an omitted optional input, name None, is looked up as the
    key None, which the run's environment maps to None)."""
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
        self._schedules: dict[tuple[str, ...], list[Step]] = {}
        self._updates: dict[tuple[str, ...], tuple[list[str], list[tuple[Any, str]]]] = {}
        self.op_times: dict[str, float] | None = None
        # constants and state: their Value objects (the data is read each run; the set of values
        # is fixed once a graph is compiled)
        self._stored = [v for v in graph.values.values() if v.kind not in ("temp", "input")]
        missing = sorted({n.op_type for n in graph.nodes if n.op_type not in KERNELS})
        if missing:
            raise RctcError(f"no runtime kernel for op(s): {', '.join(missing)}; this .rct needs a newer rctc")

    def nodes_for(self, outputs: Sequence[str]) -> list[Node]:
        """The nodes computing ``outputs``, in the graph's order (a valid schedule)."""
        g = self.graph
        needed = g.ancestors([g.value(o) for o in outputs])
        return [n for n in g.nodes if n.name in needed]

    def schedule(self, outputs: Sequence[str]) -> list[Step]:
        key = tuple(outputs)
        if key in self._schedules:
            return self._schedules[key]
        steps = self.plan(self.nodes_for(outputs), outputs)
        self._schedules[key] = steps
        return steps

    def prepare(self, outputs: Sequence[str], training: bool = True) -> None:
        """Resolve the schedule of ``outputs`` ahead of the first run (a backend also builds its code)."""
        self.schedule(outputs)

    def plan(self, nodes: Sequence[Node], outputs: Sequence[str]) -> list[Step]:
        """``nodes`` (a valid order) resolved into steps: every value but ``outputs`` dies after
        its last reader among them (an output nobody reads, an optional BN stat, right away)."""
        keep = set(outputs)
        free_at: dict[int, list[str]] = {}
        for name, (_, end) in self.graph.live_ranges(list(nodes)).items():
            if name not in keep:
                free_at.setdefault(end, []).append(name)
        return [
            Step(
                KERNELS[n.op_type],
                n,
                _fetcher(tuple(v.name if v is not None else None for v in n.inputs)),
                n.outputs[0].name if len(n.outputs) == 1 else tuple(o.name for o in n.outputs),
                tuple(free_at.get(i, [])),
            )
            for i, n in enumerate(nodes)
        ]

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        ctx: KernelContext | None = None,
        on_node: OnNode | None = None,
    ) -> dict[str, np.ndarray]:
        """Compute ``outputs`` from ``feeds`` plus the graph's constants and state."""
        ctx = ctx or KernelContext()
        env = self.environment(feeds)
        self.execute(self.schedule(outputs), env, ctx, on_node)
        return {o: env[o] for o in outputs}

    def environment(self, feeds: Mapping[str, np.ndarray]) -> dict[str | None, Any]:
        """A run's values at its start: the stored values, the feeds, None for an omitted input."""
        env: dict[str | None, Any] = {v.name: v.data for v in self._stored}
        env.update(feeds)
        env[None] = None  # an omitted optional input
        return env

    def execute(self, steps: Sequence[Step], env: dict[str | None, Any], ctx: KernelContext,
                on_node: OnNode | None = None) -> None:
        """Run ``steps`` on ``env`` in place (their outputs enter it, dead values leave it)."""
        timing = self.op_times
        pop = env.pop
        for kernel, node, fetch, outs, free in steps:
            args = fetch(env)
            t0 = time.perf_counter() if timing is not None else 0.0
            try:
                result = kernel(ctx, node, *args)
            except RctcError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised with the node named
                raise _kernel_error(node, args, exc) from exc
            if timing is not None:
                timing[node.op_type] = timing.get(node.op_type, 0.0) + time.perf_counter() - t0
            if outs.__class__ is str:
                env[outs] = result[0] if isinstance(result, tuple) else result
            else:
                env.update(zip(outs, result))
            if on_node is not None:
                on_node(node, list(args), result, env)
            for name in free:
                pop(name, None)

    def _step_outputs(self, outputs: Sequence[str]) -> tuple[list[str], list[tuple[Any, str]]]:
        """A training step's computed values (``outputs`` and every state update) and its write-backs."""
        key = tuple(outputs)
        cached = self._updates.get(key)
        if cached is None:  # the state updates are fixed once a graph is compiled (like the stored values)
            updates = self.graph.state_updates
            cached = (list(dict.fromkeys(list(outputs) + list(updates.values()))),
                      [(self.graph.values[state], new) for state, new in updates.items()])
            self._updates[key] = cached
        return cached

    def prepare_step(self, outputs: Sequence[str]) -> None:
        """:meth:`prepare` the training step of ``outputs`` (see :meth:`train_step`)."""
        self.prepare(self._step_outputs(outputs)[0], training=True)

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
        wanted, write_back = self._step_outputs(outputs)
        result = self.run(feeds, wanted, ctx, on_node)
        if guard is not None:
            guard(result)
        for value, new in write_back:
            value.data = result[new]
        return {o: result[o] for o in outputs}

"""The rctc graph IR: Graph / Node / Value with tracked uses.

Edges change only through IR methods (``Node.set_input``, ``Value.replace_all_uses_with``,
``Graph.remove_node``), so every Value always knows its producer and all its uses.
Graph algorithms (topological order, reachability, liveness) go through networkx.

Value kinds:
  input    graph input fed per step (data, labels, learning rate)
  param    a parameter (weight / bias / scale); ``trainable`` says whether it trains
  buffer   persistent non-trained state (BatchNorm running stats, momentum, exponents)
  const    a constant tensor (folded at import or made by a pass)
  temp     produced by a node

Value roles (``Value.role``, a ``Role(kind, of)``; None for an ordinary value) say what a
value is *for*, so no pass reads it out of a name:
  grad             the gradient of ``of`` (a parameter's, or the loss seed: of the loss)
  optimizer-state  optimizer state of parameter ``of`` (momentum velocity)
  int-view         the integer copy of ``of`` (QuantAct / QuantGrad output)
  exponent         the power-of-two exponent of ``of`` (a slot's ``.exp`` or a quantiser's)
  bits             the current bitwidth of parameter (or velocity) ``of``
Roles are kept in ``Value.meta["role"]`` so the .rct file carries them; renaming a value
updates the roles that name it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rctc.errors import RctcError

if TYPE_CHECKING:  # networkx is imported where its algorithms run: ~0.14 s of every CLI start otherwise
    import networkx as nx

VALUE_KINDS = ("input", "param", "buffer", "const", "temp")
GRAD, OPTIMIZER_STATE, INT_VIEW, EXPONENT, BITS = "grad", "optimizer-state", "int-view", "exponent", "bits"
ROLE_KINDS = (GRAD, OPTIMIZER_STATE, INT_VIEW, EXPONENT, BITS)


@dataclass(frozen=True)
class Role:
    """What a value is for, and whose it is (``of``: the owning value's name)."""

    kind: str
    of: str

    def __post_init__(self) -> None:
        if self.kind not in ROLE_KINDS:
            raise IRError(f"unknown value role {self.kind!r}; known: {', '.join(ROLE_KINDS)}")


class IRError(RctcError):
    """An internal graph invariant was broken (a compiler bug, or a bad hand-built graph)."""


class Value:
    """A tensor in the graph: produced by at most one node, used by any number."""

    __slots__ = ("name", "shape", "dtype", "kind", "data", "producer", "uses", "trainable", "meta")

    def __init__(
        self,
        name: str,
        shape: Sequence[int] | None = None,
        dtype: Any = None,
        kind: str = "temp",
        data: np.ndarray | None = None,
    ) -> None:
        if kind not in VALUE_KINDS:
            raise IRError(f"value {name!r}: unknown kind {kind!r}")
        self.name = name
        if data is not None:
            data = np.asarray(data)
            shape = data.shape if shape is None else shape
            dtype = data.dtype if dtype is None else dtype
        self.shape: tuple[int, ...] | None = None if shape is None else tuple(int(d) for d in shape)
        self.dtype: np.dtype | None = None if dtype is None else np.dtype(dtype)
        self.kind = kind
        self.data = data
        self.producer: Node | None = None
        self.uses: list[tuple[Node, int]] = []
        self.trainable = False
        self.meta: dict[str, Any] = {}

    @property
    def role(self) -> Role | None:
        r = self.meta.get("role")
        return None if r is None else Role(str(r[0]), str(r[1]))

    @role.setter
    def role(self, role: Role | None) -> None:
        if role is None:
            self.meta.pop("role", None)
        else:
            self.meta["role"] = [role.kind, role.of]

    def has_role(self, kind: str, of: str | None = None) -> bool:
        r = self.role
        return r is not None and r.kind == kind and (of is None or r.of == of)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape is not None else 0

    @property
    def nbytes(self) -> int:
        return self.size * (self.dtype.itemsize if self.dtype is not None else 0)

    def replace_all_uses_with(self, other: Value) -> None:
        """Point every use of this value at ``other`` instead."""
        for node, idx in list(self.uses):
            node.set_input(idx, other)

    def __repr__(self) -> str:
        return f"Value({self.name!r}, {self.shape}, {self.dtype}, {self.kind})"


class Node:
    """One operation. ``domain`` is '' for ONNX ops and 'rctc' for rctc's own ops."""

    __slots__ = ("op_type", "name", "domain", "_inputs", "outputs", "attrs", "graph", "meta")

    def __init__(
        self,
        op_type: str,
        name: str,
        inputs: Sequence[Value | None],
        outputs: Sequence[Value],
        attrs: dict[str, Any] | None = None,
        domain: str = "",
    ) -> None:
        self.op_type = op_type
        self.name = name
        self.domain = domain
        self._inputs: list[Value | None] = []
        self.outputs: list[Value] = list(outputs)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.graph: Graph | None = None
        self.meta: dict[str, Any] = {}
        for out in self.outputs:
            if out.producer is not None:
                raise IRError(f"value {out.name!r} already produced by {out.producer.name!r}")
            out.producer = self
        for i, v in enumerate(inputs):
            self._inputs.append(v)
            if v is not None:
                v.uses.append((self, i))

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    @property
    def phase(self) -> str:
        """Which part of a training step the node belongs to: ``"forward"`` (the default),
        ``"backward"`` or ``"update"`` (build_backward and add_optimizer set ``meta["phase"]``)."""
        return self.meta.get("phase", "forward")

    def input(self, i: int) -> Value | None:
        return self._inputs[i] if i < len(self._inputs) else None

    def set_input(self, i: int, value: Value | None) -> None:
        old = self._inputs[i]
        if old is not None:
            old.uses.remove((self, i))
        self._inputs[i] = value
        if value is not None:
            value.uses.append((self, i))

    def _detach(self) -> None:
        for i, v in enumerate(self._inputs):
            if v is not None:
                v.uses.remove((self, i))
        self._inputs = [None] * len(self._inputs)
        for out in self.outputs:
            out.producer = None

    def __repr__(self) -> str:
        ins = ", ".join(v.name if v is not None else "-" for v in self._inputs)
        outs = ", ".join(v.name for v in self.outputs)
        return f"{outs} = {self.op_type}[{self.name}]({ins})"


@dataclass
class Graph:
    """A scheduled dataflow graph. ``nodes`` is kept in a valid topological order."""

    name: str = "graph"
    inputs: list[Value] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    values: dict[str, Value] = field(default_factory=dict)
    # persistent state written back after each step: state value name -> updated value name
    state_updates: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    _counter: itertools.count = field(default_factory=itertools.count, repr=False)

    # ----- values ---------------------------------------------------------
    def unique_name(self, base: str) -> str:
        if base not in self.values:
            return base
        while True:
            cand = f"{base}__{next(self._counter)}"
            if cand not in self.values:
                return cand

    def add_value(
        self,
        name: str,
        shape: Sequence[int] | None = None,
        dtype: Any = None,
        kind: str = "temp",
        data: np.ndarray | None = None,
    ) -> Value:
        """Create a value with a fresh (uniquified) name and register it."""
        v = Value(self.unique_name(name), shape, dtype, kind, data)
        self.values[v.name] = v
        return v

    def add_const(self, name: str, data: Any, dtype: Any = None) -> Value:
        arr = np.asarray(data, dtype=dtype)
        return self.add_value(name, arr.shape, arr.dtype, "const", arr)

    def add_input(self, name: str, shape: Sequence[int], dtype: Any) -> Value:
        v = self.add_value(name, shape, dtype, "input")
        self.inputs.append(v)
        return v

    def value(self, name: str) -> Value:
        try:
            return self.values[name]
        except KeyError:
            raise IRError(f"graph {self.name!r} has no value {name!r}") from None

    def with_role(self, kind: str, of: str) -> Value:
        """The value that has role ``kind`` for ``of`` (e.g. the ``bits`` of a parameter)."""
        for v in self.values.values():
            if v.has_role(kind, of):
                return v
        raise IRError(f"graph {self.name!r} has no {kind} value for {of!r}")

    def role_owners(self, kind: str) -> set[str]:
        """Names of the values that some value has role ``kind`` for."""
        return {r.of for v in self.values.values() if (r := v.role) is not None and r.kind == kind}

    def params(self, trainable_only: bool = False) -> list[Value]:
        return [v for v in self.values.values() if v.kind == "param" and (v.trainable or not trainable_only)]

    def state_values(self) -> list[Value]:
        """Values that persist between steps (parameters and buffers)."""
        return [v for v in self.values.values() if v.kind in ("param", "buffer")]

    # ----- nodes ----------------------------------------------------------
    def add_node(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        outputs: Sequence[Value | tuple[str, Sequence[int] | None, Any]] | int = 1,
        attrs: dict[str, Any] | None = None,
        name: str | None = None,
        domain: str = "",
        before: Node | None = None,
        after: Node | None = None,
    ) -> Node:
        """Create a node and insert it (at the end, or before/after a given node).

        ``outputs`` is a list of Values or ``(name, shape, dtype)`` triples; an int makes
        that many unnamed outputs whose shapes the caller sets.
        """
        node_name = self._unique_node_name(name or op_type)
        outs: list[Value] = []
        if isinstance(outputs, int):
            outputs = [(f"{node_name}_out{i}", None, None) for i in range(outputs)]
        for o in outputs:
            if isinstance(o, Value):
                if o.name not in self.values:
                    self.values[o.name] = o
                outs.append(o)
            else:
                outs.append(self.add_value(o[0], o[1], o[2]))
        node = Node(op_type, node_name, inputs, outs, attrs, domain)
        node.graph = self
        if before is not None:
            self.nodes.insert(self.nodes.index(before), node)
        elif after is not None:
            self.nodes.insert(self.nodes.index(after) + 1, node)
        else:
            self.nodes.append(node)
        return node

    def _unique_node_name(self, base: str) -> str:
        names = self.meta.setdefault("_node_names", set())
        name = base
        while name in names:
            name = f"{base}__{next(self._counter)}"
        names.add(name)
        return name

    def remove_node(self, node: Node, force: bool = False) -> None:
        """Remove ``node``. Refuses while any output is still used or is a graph output."""
        if not force:
            for out in node.outputs:
                if out.uses:
                    users = ", ".join(sorted({u.name for u, _ in out.uses}))
                    raise IRError(f"cannot remove {node.name!r}: output {out.name!r} still used by {users}")
                if out in self.outputs or out.name in self.state_updates.values():
                    raise IRError(f"cannot remove {node.name!r}: output {out.name!r} is a graph output")
        node._detach()
        self.nodes.remove(node)
        node.graph = None
        for out in node.outputs:
            if not out.uses and out not in self.outputs:
                self.values.pop(out.name, None)

    def remove_unused(self) -> int:
        """Dead-code elimination: drop nodes whose outputs nobody needs; returns how many.

        Live: the graph outputs, the state updates and ``meta["logits"]`` (training reads it for
        the accuracy even when no node does, as when the integer loss reads its integer form)."""
        live_names = {v.name for v in self.outputs} | set(self.state_updates.values())
        if isinstance(self.meta.get("logits"), str):
            live_names.add(self.meta["logits"])
        removed = 0
        for node in reversed(list(self.nodes)):
            if any(o.uses or o.name in live_names for o in node.outputs):
                continue
            self.remove_node(node)
            removed += 1
        for name, v in list(self.values.items()):
            if v.kind == "const" and not v.uses and v not in self.outputs:
                del self.values[name]
        return removed

    def replace_value(self, old: Value, new: Value, take_name: bool = False) -> None:
        """Replace every use of ``old`` by ``new``, graph outputs included.

        With ``take_name`` the new value also takes over the old one's name (the old value is
        renamed), so names other code refers to (model outputs, meta) stay valid.
        """
        old.replace_all_uses_with(new)
        self.outputs = [new if o is old else o for o in self.outputs]
        for k, v in list(self.state_updates.items()):
            if v == old.name:
                self.state_updates[k] = new.name
        if take_name:
            name, tmp = old.name, self.unique_name(f"{old.name}.replaced")
            self.rename_value(old, tmp)
            self.rename_value(new, name)

    def rename_value(self, v: Value, name: str) -> None:
        if self.values.get(v.name) is not v:
            raise IRError(f"value {v.name!r} is not in graph {self.name!r}")
        if name in self.values and self.values[name] is not v:
            raise IRError(f"cannot rename {v.name!r} to {name!r}: the name is taken")
        for k, u in list(self.state_updates.items()):
            if u == v.name:
                self.state_updates[k] = name
        old = v.name
        del self.values[v.name]
        v.name = name
        self.values[name] = v
        for u in self.values.values():  # roles name their owner (read raw: this runs per rename)
            r = u.meta.get("role")
            if r is not None and r[1] == old:
                u.meta["role"] = [r[0], name]

    # ----- algorithms (networkx) -----------------------------------------
    def to_networkx(self) -> nx.DiGraph:
        """Node-level dependency DiGraph (edges carry the value names)."""
        import networkx as nx

        g = nx.DiGraph()
        for node in self.nodes:
            g.add_node(node.name, node=node)
        for node in self.nodes:
            for v in node.inputs:
                if v is not None and v.producer is not None and v.producer.graph is self:
                    if g.has_edge(v.producer.name, node.name):
                        g.edges[v.producer.name, node.name]["values"].add(v.name)
                    else:
                        g.add_edge(v.producer.name, node.name, values={v.name})
        return g

    def toposort(self) -> None:
        """Re-order ``nodes`` topologically, stable with respect to the current order."""
        import networkx as nx

        g = self.to_networkx()
        order = {n.name: i for i, n in enumerate(self.nodes)}
        names = list(nx.lexicographical_topological_sort(g, key=lambda n: order[n]))
        by_name = {n.name: n for n in self.nodes}
        self.nodes = [by_name[n] for n in names]

    def ancestors(self, values: Iterable[Value]) -> set[str]:
        """Names of nodes that any of ``values`` depends on (including their producers): a walk
        up the producers of this graph's node inputs (the edges ``to_networkx`` draws)."""
        out: set[str] = set()
        stack = [v.producer for v in values if v.producer is not None]
        while stack:
            node = stack.pop()
            if node.name in out:
                continue
            out.add(node.name)
            stack.extend(v.producer for v in node.inputs
                         if v is not None and v.producer is not None and v.producer.graph is self)
        return out

    def live_ranges(self, nodes: Sequence[Node] | None = None) -> dict[str, tuple[int, int]]:
        """Liveness over a schedule (default: all nodes): for every value a node of it produces,
        (index of its producer, index of its last reader; the producer's if nobody reads it)."""
        ranges: dict[str, tuple[int, int]] = {}
        for i, node in enumerate(self.nodes if nodes is None else nodes):
            for v in node.inputs:
                if v is not None and v.name in ranges:
                    ranges[v.name] = (ranges[v.name][0], i)
            for o in node.outputs:
                ranges[o.name] = (i, i)
        return ranges

    # ----- checking ------------------------------------------------------
    def verify(self) -> None:
        """Check the invariants every pass may rely on; raise IRError naming what broke."""
        seen_nodes: set[str] = set()
        defined: set[str] = {v.name for v in self.values.values() if v.kind != "temp"}
        for v in self.values.values():
            if v.kind in ("param", "buffer", "const") and v.data is None and not v.meta.get("external"):
                raise IRError(f"{v.kind} {v.name!r} has no data")
            if v.kind != "temp" and v.producer is not None:
                raise IRError(f"{v.kind} value {v.name!r} must not have a producer")
        for pos, node in enumerate(self.nodes):
            if node.name in seen_nodes:
                raise IRError(f"duplicate node name {node.name!r}")
            seen_nodes.add(node.name)
            if node.graph is not self:
                raise IRError(f"node {node.name!r} does not belong to this graph")
            for i, v in enumerate(node.inputs):
                if v is None:
                    continue
                if self.values.get(v.name) is not v:
                    raise IRError(f"node {node.name!r} input {i} ({v.name!r}) is not a value of the graph")
                if v.name not in defined:
                    raise IRError(
                        f"node {node.name!r} (#{pos}) reads {v.name!r} before it is produced "
                        "(graph not in topological order)"
                    )
                if (node, i) not in v.uses:
                    raise IRError(f"use of {v.name!r} by {node.name!r} is not tracked")
            for out in node.outputs:
                if out.producer is not node:
                    raise IRError(f"output {out.name!r} of {node.name!r} has the wrong producer")
                if self.values.get(out.name) is not out:
                    raise IRError(f"output {out.name!r} of {node.name!r} is not registered")
                if out.shape is None or out.dtype is None:
                    raise IRError(f"value {out.name!r} (output of {node.op_type} {node.name!r}) has no shape/dtype")
                defined.add(out.name)
        for v in self.values.values():
            for user, idx in v.uses:
                if user.graph is not self or user.input(idx) is not v:
                    raise IRError(f"dangling use of {v.name!r} by removed/changed node {user.name!r}")
            if v.kind == "temp" and v.producer is None:
                raise IRError(f"temporary value {v.name!r} has no producer")
        for v in self.outputs:
            if v.name not in defined:
                raise IRError(f"graph output {v.name!r} is never produced")
        for state, new in self.state_updates.items():
            if state not in self.values or self.values[state].kind not in ("param", "buffer"):
                raise IRError(f"state update target {state!r} is not a parameter or buffer")
            if new not in defined:
                raise IRError(f"state update {state!r} <- {new!r}: value is never produced")

    def __str__(self) -> str:
        lines = [f"graph {self.name}("]
        lines += [f"  {v.name}: {v.dtype}{list(v.shape or [])}" for v in self.inputs]
        lines.append(") {")
        for n in self.nodes:
            shapes = ", ".join(f"{o.dtype}{list(o.shape or [])}" for o in n.outputs)
            lines.append(f"  {n!r}  # {shapes}")
        for s, u in self.state_updates.items():
            lines.append(f"  {s} <- {u}")
        lines.append("  return " + ", ".join(v.name for v in self.outputs))
        lines.append("}")
        return "\n".join(lines)

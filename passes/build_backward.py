"""build_backward: the backward pass as IR, built at compile time by a reverse sweep.

Needs: a graph with a scalar loss (``graph.meta["loss"]``) and trainable flags set.
Leaves: for every trainable parameter P a gradient value (``graph.meta["param_grads"][P]``),
computed by backward nodes (``node.meta["phase"] == "backward"``, ``meta["fwd"]`` = the
forward node they differentiate). Only values that depend on a trainable parameter and
feed the loss get gradients (networkx reachability), so a frozen prefix has no backward.
Values used more than once get their gradients summed. An op on a gradient path with no
rule is reported with every such node named, before anything is emitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np

from rctc.errors import UnsupportedOpError
from rctc.ir import GRAD, Graph, Node, Role, Value
from rctc.ops import domain_of
from rctc.options import CompileOptions
from rctc.passes.grad_rules import RULES


class BackwardBuilder:
    """What gradient rules use to emit IR: node creation and the needs-gradient test."""

    def __init__(self, g: Graph, needs: set[str]) -> None:
        self.g = g
        self._needs = needs
        self.fwd: Node | None = None

    def needs(self, v: Value | None) -> bool:
        return v is not None and v.name in self._needs

    def wants(self, v: Value | None) -> bool:
        """Whether ``v`` needs a gradient: on a gradient path and of a float type."""
        return self.needs(v) and v is not None and v.dtype is not None and np.issubdtype(v.dtype, np.floating)

    def op(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        outs: Sequence[tuple[str, Sequence[int], Any]],
        attrs: dict[str, Any] | None = None,
        domain: str | None = None,
    ) -> list[Value]:
        """Emit one node (in its definition's domain: '' for standard ONNX ops, else 'rctc')."""
        if domain is None:
            domain = domain_of(op_type)
        fwd = self.fwd.name if self.fwd is not None else "loss"
        node = self.g.add_node(
            op_type, inputs, [(f"{n}", s, d) for n, s, d in outs], attrs, name=f"{fwd}/grad/{op_type}", domain=domain
        )
        node.meta.update({"phase": "backward", "fwd": fwd})
        return node.outputs

    def like(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        like: Value,
        attrs: dict[str, Any] | None = None,
        suffix: str = "",
    ) -> Value:
        """Emit a node with one output shaped like ``like``, named as its gradient."""
        out = self.op(op_type, inputs, [(f"grad::{like.name}{suffix}", like.shape, like.dtype)], attrs)[0]
        out.role = Role(GRAD, like.name)
        return out

    def reduce_to(self, grad: Value, target: Value) -> Value:
        """Sum a broadcast gradient back down to ``target``'s shape (no-op when equal)."""
        if tuple(grad.shape) == tuple(target.shape):
            return grad
        return self.like("ReduceSumTo", [grad], target, {"shape": list(target.shape)})

    def add(self, a: Value, b: Value) -> Value:
        return self.op("Add", [a, b], [(f"{a.name}+", a.shape, a.dtype)], domain="")[0]




def _needs_grad(g: Graph, targets: Sequence[Value]) -> set[str]:
    """Float values that depend on a trainable parameter and that a target (the loss) depends on.
    An integer or boolean value carries no gradient (a comparison, Shape, ArgMax), so dependence
    through one does not count: the op that makes it needs no gradient rule."""
    def carries(v: Value) -> bool:
        return v.dtype is None or np.issubdtype(v.dtype, np.floating)

    dg = nx.DiGraph()
    for n in g.nodes:
        for v in n.inputs:
            if v is not None and carries(v):
                for o in n.outputs:
                    if carries(o):
                        dg.add_edge(v.name, o.name)
    trainable = [p.name for p in g.params(trainable_only=True) if p.name in dg]
    down: set[str] = set(trainable)
    for p in trainable:
        down |= nx.descendants(dg, p)
    up: set[str] = set()
    for t in targets:
        up |= {t.name} | (nx.ancestors(dg, t.name) if t.name in dg else set())
    return down & up


def backward(g: Graph, seeds: dict[str, Value], wrt: Sequence[Value]) -> dict[str, Value]:
    """Emit the reverse sweep from ``seeds`` (value name -> its gradient); return grads of ``wrt``.

    Gradients flow only through values that depend on a trainable parameter and reach a seed.
    """
    needs = _needs_grad(g, [g.value(s) for s in seeds])
    fwd_nodes = [n for n in g.nodes if any(o.name in needs for o in n.outputs)]
    missing = [
        f"{n.op_type} ({n.name})"
        for n in fwd_nodes
        if n.op_type not in RULES and any(v is not None and v.name in needs for v in n.inputs)
    ]
    if missing:
        raise UnsupportedOpError(
            f"no gradient rule for op(s) on a gradient path: {', '.join(missing)}; freeze the layers before them "
            "(--freeze) or replace the op"
        )
    b = BackwardBuilder(g, needs)
    grads: dict[str, list[Value]] = {name: [seed] for name, seed in seeds.items()}

    def total(v: Value) -> Value | None:
        parts = grads.get(v.name)
        if not parts:
            return None
        acc = parts[0]
        for p in parts[1:]:
            acc = b.add(acc, p)
        grads[v.name] = [acc]
        return acc

    for node in reversed(fwd_nodes):
        dys = [total(o) for o in node.outputs]
        if all(d is None for d in dys):
            continue
        b.fwd = node
        dxs = RULES[node.op_type](b, node, dys)
        for v, dx in zip(node.inputs, dxs):
            if dx is not None and b.needs(v):
                if tuple(dx.shape) != tuple(v.shape):
                    raise AssertionError(
                        f"rule {node.op_type}: gradient of {v.name} has shape {dx.shape}, want {v.shape}"
                    )
                grads.setdefault(v.name, []).append(dx)
    out = {}
    for v in wrt:
        gv = total(v) if v.name in needs else None
        if gv is not None:
            out[v.name] = gv
    return out


def run(g: Graph, options: CompileOptions) -> None:
    loss = g.value(g.meta["loss"])
    seed = g.add_const("grad::loss.seed", np.ones((), dtype=loss.dtype))
    seed.role = Role(GRAD, loss.name)
    grads = backward(g, {loss.name: seed}, g.params(trainable_only=True))
    for name, v in grads.items():
        v.role = Role(GRAD, name)
    g.meta["param_grads"] = {name: v.name for name, v in grads.items()}

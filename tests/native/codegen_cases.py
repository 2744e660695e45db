"""Helpers of the code-generator tests: the slice of a graph the C step maps, the values it
hands on, feeds for a compiled model, and the bit-for-bit comparison with the numpy run."""

from __future__ import annotations

import numpy as np

from rctc.ir import Graph, Node
from rctc.native.codegen import EMITTERS


def mapped(g: Graph) -> list[Node]:
    """The graph's nodes that have a C emitter, in schedule order."""
    return [n for n in g.nodes if n.op_type in EMITTERS]


def boundary(g: Graph, nodes: list[Node]) -> list[str]:
    """The values of ``nodes`` the rest of the step reads (what a partial native step hands on)."""
    inside = {n.name for n in nodes}
    made = {o.name for n in nodes for o in n.outputs}
    read = {v.name for n in g.nodes if n.name not in inside for v in n.inputs if v is not None}
    return [o.name for n in nodes for o in n.outputs if o.name in read and o.name in made]


def assert_same(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], names: list[str]) -> None:
    """Every named value equal: dtype, shape and every element."""
    for name in names:
        want = np.asarray(ref[name])
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        assert np.array_equal(got[name], want), f"{name}: first mismatch at {np.argwhere(got[name] != want)[0]}"


def feeds(g: Graph, rng: np.random.Generator, lr: float, scale: float = 1.0, classes: int = 10) -> dict:
    """Random feeds for every input of a compiled classifier (``x``, ``labels``, ``sample_mask``, ``lr``)."""
    out: dict[str, np.ndarray] = {}
    for v in g.values.values():
        if v.kind != "input":
            continue
        if v.name == "labels":
            out[v.name] = rng.integers(0, classes, v.shape)
        elif v.name == "sample_mask":
            out[v.name] = np.ones(v.shape, np.float32)
        elif v.name == "lr":
            out[v.name] = np.float32(lr)
        else:
            out[v.name] = (rng.standard_normal(v.shape) * scale).astype(np.float32)
    return out

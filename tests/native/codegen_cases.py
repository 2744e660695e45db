"""Shared pieces of the code-generator tests: bit-exact comparison of a native step's values
with the numpy run's, and the values a partial native step hands on to the rest of the step."""

from __future__ import annotations

import numpy as np

from rctc.ir import Graph


def assert_same(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], names: list[str]) -> None:
    """Every value of ``names`` equal in dtype, shape and bits."""
    for name in names:
        want = np.asarray(ref[name])
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        assert np.array_equal(got[name], want), f"{name}: first mismatch at {np.argwhere(got[name] != want)[0]}"


def boundary(g: Graph, nodes: list) -> list[str]:
    """The values of ``nodes`` the rest of the step reads (what a partial native step hands on)."""
    inside = {n.name for n in nodes}
    made = {o.name for n in nodes for o in n.outputs}
    read = {v.name for n in g.nodes if n.name not in inside for v in n.inputs if v is not None}
    return [o.name for n in nodes for o in n.outputs if o.name in read and o.name in made]

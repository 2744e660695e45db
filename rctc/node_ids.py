"""Stable integer node ids: the node part of the random stream's key ``(seed, step, node_id)``.

Every backend draws a node's random words from ``rctc.rng.random_words(seed, step, node_id, ...)``
(see docs/rng.md), so each node of a training graph needs one integer that is the same on every
backend, survives saving and loading, and differs from every other node's.

Needs: a Graph whose node list is final (the compile driver calls :func:`assign_node_ids` after
the last pass; ``rct_format`` calls it on load for files written before ids existed).
Leaves: ``node.meta["node_id"]`` on every node: its position in ``graph.nodes`` (0, 1, ...), an
int below 2^32, unique in the graph. ``.rct`` files carry node meta, so a loaded graph keeps the
ids it was compiled with; nothing reassigns an id a graph already has.
"""

from __future__ import annotations

from rctc.ir import Graph, Node

__all__ = ["NODE_ID", "assign_node_ids", "has_node_ids", "node_id"]

#: the node meta key holding the id
NODE_ID = "node_id"
_LIMIT = 1 << 32


def has_node_ids(g: Graph) -> bool:
    """Whether every node of ``g`` carries an id."""
    return all(NODE_ID in n.meta for n in g.nodes)


def assign_node_ids(g: Graph) -> None:
    """Number the nodes of ``g`` in graph order; refuse a graph that is already partly numbered
    (its ids came from a compile and must not move) or too large for 32-bit ids."""
    if len(g.nodes) > _LIMIT:
        raise ValueError(f"{len(g.nodes)} nodes: node ids are 32-bit (at most 2^32 nodes)")
    if any(NODE_ID in n.meta for n in g.nodes):
        missing = [n.name for n in g.nodes if NODE_ID not in n.meta]
        if missing:
            raise ValueError(f"graph {g.name!r} has node ids on some nodes only (none on {missing[0]!r})")
        return
    for i, n in enumerate(g.nodes):
        n.meta[NODE_ID] = i


def node_id(node: Node) -> int:
    """The id of ``node``; RuntimeError when it has none (a graph built without the compile driver:
    call :func:`assign_node_ids` on it first)."""
    try:
        nid = node.meta[NODE_ID]
    except KeyError:
        raise RuntimeError(f"node {node.name!r} ({node.op_type}) has no node id for its random stream; "
                           "graphs get them from rctc.node_ids.assign_node_ids when compiled") from None
    if isinstance(nid, bool) or not isinstance(nid, int) or not 0 <= nid < _LIMIT:
        raise RuntimeError(f"node {node.name!r} has node id {nid!r}; ids are integers in [0, 2^32)")
    return nid

"""sum_accumulators (rct mode, integer element-wise): a gradient sum reads its contributions'
exact accumulators, so it is rounded once.

Where a value feeds several ops (a transformer's LayerNorm output read by the q, k and v
projections), build_backward sums their data gradients with Add, which requantise lowers to
``IntAdd`` of the contributions' ``Requantize`` outputs: each product's int32 accumulator is
rounded to ``grad_bits`` (stochastically, one random word an element), then the sum is rounded
again. ``IntAdd`` aligns operands of any integer width exactly (``intref.arith.add``, the C
``rctc_iq_add``), so it can read the accumulators themselves: the sum of the exact products,
one rounding, and one draw of words instead of three.

Needs: requantise (the backward ``IntAdd`` nodes and the ``Requantize`` after every product);
runs before fuse_updates.
Leaves: every operand ``(q, e)`` of a backward ``IntAdd`` that is the output of a bias-free
``Requantize`` of an int32 accumulator of an ``IntGemm`` / ``IntMatMul``, read by nothing else
(directly or through single-use ``Reshape`` nodes, which are rebuilt on the accumulator), reads
that accumulator and its exponent instead; the ``Requantize`` is gone. The ``IntAdd`` keeps its
``bits`` and rounding. Convolution data gradients keep their requantise: activation-sized and
int64 in the deep layers, summed wide they cost the native step more than the roundings they
save (ResNet-8 19.6-21.5 -> 22.0-22.2 ms a step, measured), and a device step forms them a
channel block at a time straight into their requantise (rctc.analysis.arena.streamable).
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Graph, Node, Value
from rctc.options import CompileOptions

#: products whose accumulators a gradient sum reads directly
SUMMED_PRODUCTS = frozenset({"IntGemm", "IntMatMul"})


def _only_reader(g: Graph, v: Value, reader: Node) -> bool:
    """``v`` is read once, by ``reader``, and is no graph output or state update."""
    return (len(v.uses) == 1 and v.uses[0][0] is reader and v not in g.outputs
            and v.name not in g.state_updates.values())


def _contribution(g: Graph, add: Node, slot: int) -> tuple[Node, list[Node]] | None:
    """``(requantize, reshapes)`` when operand ``slot`` of ``add`` is a summable contribution:
    the Requantize and the Reshape chain from it to ``add`` (nearest to the Requantize last)."""
    q, e = add.inputs[slot], add.inputs[slot + 1]
    if q is None or e is None:
        return None
    chain: list[Node] = []
    reader, prod = add, q.producer
    while prod is not None and prod.op_type == "Reshape" and _only_reader(g, prod.outputs[0], reader):
        chain.append(prod)
        reader, prod = prod, prod.inputs[0].producer
    if prod is None or prod.op_type != "Requantize" or any(v is not None for v in prod.inputs[2:]):
        return None
    q_out, e_out = prod.outputs
    if e_out is not e or not _only_reader(g, q_out, reader) or not _only_reader(g, e_out, add):
        return None
    acc = prod.inputs[0]
    if (acc.producer is None or acc.producer.op_type not in SUMMED_PRODUCTS
            or np.dtype(acc.dtype) != np.dtype(np.int32)):
        return None
    return prod, chain


def _read_accumulator(g: Graph, add: Node, slot: int, rq: Node, chain: list[Node]) -> None:
    """Point operand ``slot`` of ``add`` at ``rq``'s accumulator (through copies of ``chain``
    that carry int32), then drop ``rq`` and ``chain``."""
    cur = rq.inputs[0]
    for r in reversed(chain):
        out = r.outputs[0]
        new = g.add_node("Reshape", [cur, r.inputs[1]], [(g.unique_name(f"{out.name}.acc"), out.shape, np.int32)],
                         dict(r.attrs), name=f"{r.name}.acc", domain=r.domain, before=r)
        new.meta.update(r.meta)
        cur = new.outputs[0]
    add.set_input(slot, cur)
    add.set_input(slot + 1, rq.inputs[1])
    for r in chain:
        g.remove_node(r)
    g.remove_node(rq)


def run(g: Graph, options: CompileOptions) -> None:
    if options.elementwise != "integer":
        return
    for add in [n for n in g.nodes if n.op_type == "IntAdd" and n.phase == "backward"]:
        for slot in (0, 2):
            found = _contribution(g, add, slot)
            if found is not None:
                _read_accumulator(g, add, slot, *found)

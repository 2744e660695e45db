"""The static arena of a C training step: one layout shared by the memory plan and the code generator.

Needs: a compiled graph and a run of its scheduled nodes. Leaves: pure functions (reads only).

* :func:`device_nodes`: the nodes a device training step runs: every node a state update of
  the device's state needs, in schedule order, less the host's data pipeline (the input
  quantiser, a ``QuantAct`` reading a graph input: the device receives int8 samples and their
  exponent, as from a sensor). The metrics (the Dequantize of loss and logits) feed no state
  update, so they are not in it. The updates run early (:func:`updates_early`): each right
  after the last node it depends on, so a layer's activation and error die at its update.
* :func:`host_state`: the state values of that data pipeline (the input quantiser's float
  running range), which the device does not hold and the state digest leaves out.
* :func:`layout`: where every value the nodes touch lives. Stored values (parameters, buffers,
  constants, and every value a state update overwrites) go in the state block, one after
  another, each aligned for its size (:func:`alignment`: ``ALIGN`` bytes, ``SMALL_ALIGN`` below
  that). Every other value goes in the arena: it lives from the
  node that writes it (the step's start for a value fed from outside) to its last reader (the
  step's end for a requested output or a state update's new value); the values are placed
  greedy by size at the same alignments (:func:`place`), reusing the bytes of dead ones. The output of a
  reshape (``RESHAPE`` ops: same elements in the same order) of the same dtype and size is a
  view: it shares its input's slot (state or arena), whose life extends to the view's last
  reader; a reshape's other inputs (shape, axes) are not read. The learning rate is a step
  argument (an exact integer pair), not a tensor.

* :func:`streamable` / :func:`streamed_layout`: the data-gradient accumulators a device step
  forms a block of channels at a time (never whole), taken where that lowers the arena.

``plan_memory`` stores :func:`device_layout` ``.arena_bytes`` as the plan's ``arena_bytes``;
``rctc.native.codegen.generate`` places every tensor by the same function, so the arena a
device image links is the plan's by construction (and rctc reads it back from the image to
check).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rctc.ir import Graph, Node, Value
from rctc.ops import RESHAPE_OPS, UPDATE_OPS

ALIGN = 64
#: the alignment of a value smaller than ``ALIGN`` (an exponent, a short vector): its element's
#: natural alignment at most, so a scalar does not take a whole 64-byte line
SMALL_ALIGN = 8
STORED_KINDS = ("param", "buffer", "const")


def align(n: int, to: int = ALIGN) -> int:
    """``n`` rounded up to a multiple of ``to`` (``ALIGN``)."""
    return -(-n // to) * to


def alignment(size: int) -> int:
    """Where a value of ``size`` bytes may start: ``ALIGN`` (a cache line, SIMD loads) from
    ``ALIGN`` bytes on, else ``SMALL_ALIGN``."""
    return ALIGN if size >= ALIGN else SMALL_ALIGN


def step_arguments(g: Graph) -> frozenset[str]:
    """Values a C step receives as arguments, not as tensors: the learning rate."""
    lr = g.meta.get("lr_input")
    return frozenset([lr] if lr else [])


def input_quantisers(g: Graph) -> list[Node]:
    """The host's data pipeline: every ``QuantAct`` whose input is a graph input."""
    inputs = {v.name for v in g.inputs}
    return [n for n in g.nodes if n.op_type == "QuantAct" and n.inputs[0] is not None and n.inputs[0].name in inputs]


def host_state(g: Graph) -> frozenset[str]:
    """State values of the host's data pipeline (the input quantisers' running ranges)."""
    return frozenset(
        v.name for n in input_quantisers(g) for v in n.inputs[1:] if v is not None and v.kind in ("param", "buffer")
    )


def device_nodes(g: Graph) -> list[Node]:
    """The nodes of a device training step, in schedule order with the updates early
    (:func:`updates_early`; see the module docstring)."""
    host = {n.name for n in input_quantisers(g)}
    skip = host_state(g)
    targets = [g.value(new) for state, new in g.state_updates.items() if state not in skip]
    needed = g.ancestors(targets) - host
    return updates_early(g, [n for n in g.nodes if n.name in needed])


def _in_place_shape(g: Graph, n: Node) -> bool:
    """Whether update ``n`` writes its parameter's new value at the parameter's dtype and shape."""
    if n.op_type not in UPDATE_OPS or not n.inputs or n.inputs[0] is None:
        return False
    q, new = n.inputs[0], n.outputs[0]
    return (g.state_updates.get(q.name) == new.name and np.dtype(q.dtype) == np.dtype(new.dtype)
            and tuple(q.shape) == tuple(new.shape))


def updates_early(g: Graph, nodes: Sequence[Node]) -> list[Node]:
    """``nodes`` with each update that can overwrite its parameter in place (:func:`in_place_updates`'
    dtype and shape condition) moved up to just after the last node it must follow: the producers
    of its inputs and every other reader of its parameter (so the parameter's old value is read
    before it is overwritten). A training step's weight gradients then run as soon as each
    layer's error is known, and the saved activation and error they read die there instead of
    living to the step's end. An update never moves later; the other nodes keep their order. The
    results are the same: an update reads its inputs and writes its own outputs only, and its
    random words are its node's stream, not a position in the order."""
    order = list(nodes)
    # the reader of a streamable accumulator reads its producer's inputs (a device step may form it there)
    root = views(nodes)  # a reader of a view of the parameter reads the parameter's bytes
    reads = {n.name: {x for v in n.inputs if v is not None for x in (v.name, root.get(v.name, v.name))}
             for n in nodes}
    for nm in streamable(g, nodes):
        conv = g.value(nm).producer
        for n in nodes:
            if nm in reads[n.name]:
                reads[n.name] |= reads[conv.name]
    for u in [n for n in nodes if _in_place_shape(g, n)]:
        old = order.index(u)
        ins = reads[u.name]
        param = u.inputs[0].name
        after = -1
        for i, n in enumerate(order):
            if n is not u and (any(o.name in ins for o in n.outputs) or param in reads[n.name]):
                after = i
        if after < old:
            order.pop(old)
            order.insert(after + 1, u)
    return order


def unread(n: Node, args: frozenset[str]) -> set[int]:
    """Input positions of ``n`` that are not tensors of the step: step arguments, and the shape /
    axes operands of a reshape."""
    return {i for i, v in enumerate(n.inputs)
            if v is not None and (v.name in args or (n.op_type in RESHAPE_OPS and i > 0))}


def tensors(n: Node, args: frozenset[str]) -> list[Value]:
    """The node's inputs and outputs that live in memory."""
    skip = unread(n, args)
    return [v for i, v in enumerate(n.inputs) if v is not None and i not in skip] + list(n.outputs)


def views(nodes: Sequence[Node]) -> dict[str, str]:
    """View output -> the value whose bytes it shares (followed through chains of views)."""
    root: dict[str, str] = {}
    for n in nodes:
        if n.op_type in RESHAPE_OPS:
            src, out = n.inputs[0], n.outputs[0]
            if np.dtype(src.dtype) == np.dtype(out.dtype) and nbytes(src) == nbytes(out):
                root[out.name] = root.get(src.name, src.name)
    return root


@dataclass
class Layout:
    """Where the values of a run of nodes live: state block and arena offsets, sizes, inputs."""

    state: list[str]
    inputs: list[str]
    offsets: dict[str, tuple[str, int]]  # name -> ("state" | "arena", byte offset)
    updates: dict[str, str] = field(default_factory=dict)  # state value -> the value that overwrites it
    state_bytes: int = 0
    arena_bytes: int = 0
    #: data-gradient accumulators never held whole (:func:`streamable`): no slot
    streamed: frozenset[str] = frozenset()


def nbytes(v: Value) -> int:
    return int(np.dtype(v.dtype).itemsize * math.prod(v.shape))


def place(lives: list[tuple[int, int, str, int]]) -> tuple[dict[str, int], int]:
    """Offsets for (start, end, name, nbytes) lifetimes (inclusive node indices) and the arena's
    size: greedy by size (TFLite's GreedyBySize): largest first, each at the lowest offset
    aligned for its size (:func:`alignment`) where it overlaps no placed value whose lifetime
    meets its own; the size is a multiple of ``ALIGN``."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, start, end), kept in offset order
    offsets: dict[str, int] = {}
    top = 0
    for start, end, name, size in sorted(lives, key=lambda t: (-t[3], t[0], t[2])):
        to = alignment(size)
        off = 0
        for o, n, st, e in placed:  # by offset: the first gap that fits ends the scan
            if st > end or start > e:
                continue
            if off + size <= o:
                break
            top_o = -(-(o + n) // to) * to  # align(o + n, to), inline: this loop is the layout's cost
            if top_o > off:
                off = top_o
        offsets[name] = off
        bisect.insort(placed, (off, size, start, end))
        top = max(top, align(off + size))
    return offsets, top


#: (output, input) positions of a non-update op whose output may share its input's bytes: the
#: kernel reads all of that input before it writes the output (BatchNorm's running mean / var
#: and their exponents: rctc_iq_batchnorm_train widens the old statistic before it rounds the new)
STATE_ALIASES: dict[str, tuple[tuple[int, int], ...]] = {
    "IntBatchNormalization": ((2, 6), (3, 7), (4, 8), (5, 9)),
}


def in_place_updates(g: Graph, nodes: Sequence[Node]) -> dict[str, str]:
    """New state value -> the state value it may overwrite in place: the output of an update op
    (``UPDATE_OPS``: its output 0 from its input 0, element by element), or an output the op's
    ``STATE_ALIASES`` pair with an input, that updates that state value, which no later node
    reads, of the same dtype and shape."""
    root = views(nodes)  # a reader of a view of q reads q's bytes
    readers: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            if v is not None:
                readers[v.name] = readers[root.get(v.name, v.name)] = i
    out: dict[str, str] = {}
    for i, n in enumerate(nodes):
        pairs = ((0, 0),) if n.op_type in UPDATE_OPS else STATE_ALIASES.get(n.op_type, ())
        for o, k in pairs:
            if k >= len(n.inputs) or n.inputs[k] is None or o >= len(n.outputs):
                continue
            q, new = n.inputs[k], n.outputs[o]
            if (g.state_updates.get(q.name) == new.name and readers.get(q.name) == i
                    and np.dtype(q.dtype) == np.dtype(new.dtype) and tuple(q.shape) == tuple(new.shape)):
                out[new.name] = q.name
    return out


def streamable(g: Graph, nodes: Sequence[Node], outputs: Sequence[str] = ()) -> list[str]:
    """Accumulators a device step may form a block of channels at a time instead of whole: the
    int32 / int64 output of a 2-D group-1 ``IntConvGradInput`` read only by one bias-free
    ``Requantize`` (the C computes each block twice, once for the max and once to round it: the
    same integers, the data gradient's instructions doubled). Largest first."""
    readers: dict[str, list[Node]] = {}
    for n in nodes:
        for v in n.inputs:
            if v is not None:
                readers.setdefault(v.name, []).append(n)
    out = []
    for n in nodes:
        if n.op_type != "IntConvGradInput" or int(n.attrs.get("group", 1)) != 1 or len(n.outputs[0].shape) != 4:
            continue
        acc = n.outputs[0]
        rd = readers.get(acc.name, [])
        if (np.dtype(acc.dtype) in (np.dtype(np.int32), np.dtype(np.int64)) and len(rd) == 1
                and rd[0].op_type == "Requantize" and sum(v is not None for v in rd[0].inputs) == 2
                and acc.name not in outputs and acc.name not in g.state_updates.values()):
            out.append(acc.name)
    return sorted(out, key=lambda nm: -nbytes(g.value(nm)))


def streamed_layout(g: Graph, nodes: Sequence[Node], outputs: Sequence[str] = (), in_place: bool = False) -> Layout:
    """:func:`layout` with the :func:`streamable` accumulators that make the arena smaller left
    unplaced: each, largest first, is taken while taking it lowers the arena (passes until none
    does), so a data gradient is computed twice only where that buys memory."""
    best = layout(g, nodes, outputs, in_place)
    cands = streamable(g, nodes, outputs)
    chosen: set[str] = set()
    improved = True
    while improved:
        improved = False
        for nm in cands:
            if nm in chosen:
                continue
            trial = layout(g, nodes, outputs, in_place, frozenset(chosen | {nm}))
            if trial.arena_bytes < best.arena_bytes:
                best, improved = trial, True
                chosen.add(nm)
    return best


def layout(g: Graph, nodes: Sequence[Node], outputs: Sequence[str] = (), in_place: bool = False,
           streamed: frozenset[str] = frozenset()) -> Layout:
    """The layout of a step over ``nodes``; ``outputs`` stay live to the step's end. With
    ``in_place`` the new value of a parameter that no later node reads takes the parameter's own
    state slot (:func:`in_place_updates`): the update writes the state directly and the step
    ends with no copy for it (a device step; a host step keeps every new value apart, so a
    failed step leaves the state as it was). ``streamed`` values get no slot (:func:`streamable`)."""
    args = step_arguments(g)
    produced = {o.name: i for i, n in enumerate(nodes) for o in n.outputs}
    last: dict[str, int] = {}
    values: dict[str, Value] = {}
    for i, n in enumerate(nodes):
        for v in tensors(n, args):
            values.setdefault(v.name, v)
            if v.name not in produced or produced[v.name] != i:
                last[v.name] = i
    for nm in streamed:  # its reader forms it from the producer's inputs, which live until then
        for v in tensors(nodes[produced[nm]], args):
            if v.name != nm and v.name in last and produced.get(v.name) != produced[nm]:
                last[v.name] = max(last[v.name], last[nm])
    updates = {s: new for s, new in g.state_updates.items() if new in produced}
    state = [nm for nm, v in values.items() if v.kind in STORED_KINDS or nm in updates]
    inputs = [nm for nm in values if nm not in produced and nm not in state]
    offsets: dict[str, tuple[str, int]] = {}
    off = 0
    for nm in state:
        size = nbytes(values[nm])
        off = align(off, alignment(size))
        offsets[nm] = ("state", off)
        off += size
    off = align(off)
    keep = set(outputs) | set(updates.values())
    root = views(nodes)
    if in_place:
        root.update(in_place_updates(g, nodes))
    stops: dict[str, int] = {}
    for nm in values:
        start = -1 if nm in inputs or nm in state else produced[nm]
        stop = len(nodes) if nm in keep else last.get(nm, start)
        r = root.get(nm, nm)
        stops[r] = max(stops.get(r, stop), stop)
    lives = []
    for nm, v in values.items():
        if nm in state or nm in root or nm in streamed:
            continue
        start = -1 if nm in inputs else produced[nm]
        lives.append((start, stops[nm], nm, max(1, nbytes(v))))
    arena, top = place(lives)
    offsets.update({nm: ("arena", o) for nm, o in arena.items()})
    offsets.update({nm: offsets[r] for nm, r in root.items()})
    return Layout(state, inputs, offsets, updates, off, top, frozenset(streamed))


def device_layout(g: Graph) -> Layout:
    """The layout of the device's whole step: :func:`device_nodes`, updates in place, the
    accumulators that lower the arena streamed (:func:`streamed_layout`)."""
    return streamed_layout(g, device_nodes(g), in_place=True)


__all__ = ["ALIGN", "SMALL_ALIGN", "Layout", "align", "alignment", "device_nodes", "place", "host_state",
           "input_quantisers", "layout", "step_arguments", "tensors", "unread", "updates_early", "views",
           "device_layout", "in_place_updates", "STATE_ALIASES", "streamable", "streamed_layout"]

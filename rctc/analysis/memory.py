"""The liveness-based buffer plan of one training step (what the ``plan_memory`` pass stores).

Peak memory = persistent state + step inputs + the peak of the live transients:

* parameters: fixed slots sized for the slot's MAX bits in rct mode (packed,
  ``ceil(size * max_bits / 8)``), so the plan stays valid whatever the bitwidth controller
  does; float parameters at their dtype;
* optimizer state (momentum velocities and their slot scalars) and the other buffers and
  constants (BatchNorm running statistics, activation ranges, exponents, shapes);
* graph inputs (data, labels, mask, learning rate) for the whole step;
* transients: a value produced in the step is live from its producer until its last use in
  the schedule; graph outputs and state updates (the transient update buffers) stay live
  until the end of the step, when the state is written back. Transients are sized by their
  storage dtype, and layout ops are not aliased (an upper bound for an allocator that does).

The reported parameter memory follows the design: rct at the slot's current bits (and at
max bits), fp32 as FP32, and qat as the FP32 master copy plus the quantised copy at the
fake-quant bits (this runtime holds that copy as a float transient, which the transient
peak counts).

``arena_bytes`` is a different figure: the size of the static arena of the device's step
(``rctc.analysis.arena``: the step less the host's input quantiser and metrics, every
transient and step input at an offset, 64-byte aligned, placed greedy by size, a parameter's new value
in the parameter's own slot where nothing reads the old one later), the layout the code
generator places tensors by, so a device image's ``rctc_arena`` is this size. Laying it out is
the plan's one costly part (about 0.7 s for a ResNet-20 at batch 32): ``compute_plan(...,
arena=False)`` leaves it ``None`` (the runtime's counters, which never read it).
"""

from __future__ import annotations

import math
from typing import Any

from rctc.analysis.arena import device_layout, device_nodes
from rctc.analysis.values import ValueInfo, step_nodes, step_outputs
from rctc.ir import Graph, Node, Value
from rctc.slots import has_slot, read_slot


def _packed(v: Value, bits: int) -> int:
    return (math.prod(v.shape or ()) * bits + 7) // 8


def _slot_bytes(g: Graph, v: Value, at: str) -> int:
    """Bytes of a state value: packed at the slot's bits (``at`` = "now" / "max") or its storage."""
    if has_slot(v):
        slot = v.meta["slot"]
        bits = int(slot["max_bits"]) if at == "max" else read_slot(g, v)["bits"]
        return _packed(v, bits)
    return _nbytes(v)


def _fake_quant_copies(g: Graph) -> dict[str, int]:
    """QAT: parameter name -> bits of its quantised copy (FakeQuant of the parameter)."""
    out: dict[str, int] = {}
    for n in g.nodes:
        if n.op_type == "FakeQuant" and n.inputs[0] is not None and n.inputs[0].kind == "param":
            out[n.inputs[0].name] = int(n.attrs["bits"])
    return out


def _category(info: ValueInfo, v: Value, grads: set[str]) -> str:
    prod = v.producer
    phase = prod.phase if prod is not None else "forward"
    if info.kind.get(v.name) == "param" and phase != "update":
        return "parameter_copies"
    if v.name in grads:
        return "gradients"
    if phase == "update":
        return "update_buffers"
    if phase == "backward":
        return "errors"
    return "activations"


def _nbytes(v: Value) -> int:
    return math.prod(v.shape or ()) * (v.dtype.itemsize if v.dtype is not None else 0)


def compute_plan(g: Graph, info: ValueInfo | None = None, nodes: list[Node] | None = None,
                 arena: bool = True) -> dict[str, Any]:
    """The buffer plan of one training step of ``g`` (a JSON-serialisable dict; reads only);
    ``arena=False``: no device arena layout (``arena_bytes`` is None)."""
    info = info or ValueInfo(g)
    nodes = step_nodes(g) if nodes is None else nodes
    params = g.params()
    copies = _fake_quant_copies(g)
    p_now = sum(_slot_bytes(g, p, "now") for p in params)
    p_max = sum(_slot_bytes(g, p, "max") for p in params)
    copy_bytes = sum(_packed(g.value(name), bits) for name, bits in copies.items())
    optimizer = buffers = 0
    for v in g.values.values():
        if v.kind in ("buffer", "const") and info.kind.get(v.name) == "optimizer":
            optimizer += _slot_bytes(g, v, "max")
        elif v.kind in ("buffer", "const"):
            buffers += _slot_bytes(g, v, "max")
    inputs = sum(_nbytes(v) for v in g.inputs)

    grads = set(g.meta.get("param_grads", {}).values())
    keep = set(step_outputs(g))
    last = len(nodes) - 1
    ranges = g.live_ranges(nodes)
    start = {name: s for name, (s, _) in ranges.items()}
    end = {name: last if name in keep else e for name, (_, e) in ranges.items()}
    delta = [0] * (len(nodes) + 1)
    for name, s in start.items():
        size = _nbytes(g.values[name])
        delta[s] += size
        delta[end[name] + 1] -= size
    live = peak = 0
    peak_at = 0
    for i in range(len(nodes)):
        live += delta[i]
        if live > peak:
            peak, peak_at = live, i
    at_peak: dict[str, int] = {"activations": 0, "errors": 0, "gradients": 0, "update_buffers": 0,
                               "parameter_copies": 0}
    for name, s in start.items():
        if s <= peak_at <= end[name]:
            v = g.values[name]
            at_peak[_category(info, v, grads)] += _nbytes(v)
    grad_bytes = sum(_nbytes(g.values[n]) for n in grads if n in start)
    slots = p_max
    state = slots + optimizer + buffers
    on_device = device_nodes(g)
    return {
        "nodes": len(nodes),
        "parameters": {
            "elements": int(sum(math.prod(p.shape or ()) for p in params)),
            "slot_bytes": slots,
            "bytes_now": p_now + copy_bytes,
            "bytes_at_max_bits": p_max + copy_bytes,
            "quantised_copy_bytes": copy_bytes,
        },
        "optimizer_bytes": optimizer,
        "buffer_bytes": buffers,
        "input_bytes": inputs,
        "gradient_bytes": grad_bytes,
        "transient_peak_bytes": peak,
        "transient_at_peak": at_peak,
        "peak_node": nodes[peak_at].name if nodes else None,
        "state_bytes": state,
        "peak_bytes": state + inputs + peak,
        "arena_nodes": len(on_device),
        "arena_bytes": device_layout(g).arena_bytes if arena else None,
    }


__all__ = ["compute_plan"]

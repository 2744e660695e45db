"""fuse_updates (rct mode): weight-gradient product + update become one integer update node.

Needs: insert_quant (weight-gradient products are ``Int*`` ops followed by ``Dequantize``)
and assign_slots (updates are ``IntSGDUpdate`` / ``IntMomentumUpdate``).
Leaves: for each parameter whose gradient is exactly one integer product (optionally
transposed), a ``FusedIntUpdate`` node that computes the product exactly, scales it by the
learning rate into units of the parameter's last bit, rounds stochastically, adds, clips to
the current bitwidth and records Gavg (with momentum a ``FusedIntMomentumUpdate``, which also
updates the integer velocity from the product; with AdamW a ``FusedIntAdamWUpdate``, which
updates the integer moments from it) - so no float gradient of the parameter's size
is ever a graph value. Parameters whose gradient is a sum of several products (a weight used
twice) keep the unfused update on the float gradient.

In integer graphs (``--elementwise integer``) the update of every other parameter whose
gradient is ``Dequantize(acc, acc_e)`` of an integer value (a bias sum, BatchNorm / LayerNorm
dscale and dB, an embedding's row sums, a requantised sum of products) becomes its
``acc_twin`` (``IntAccSGDUpdate`` / ``IntAccMomentumUpdate`` / ``IntAccAdamWUpdate``) reading ``(acc, acc_e)``
directly, and the ``Dequantize`` goes when nothing else reads it: no ``Dequantize`` feeds an
update. ``--elementwise float`` graphs keep version 1's float-gradient updates.
"""

from __future__ import annotations

import numpy as np

from rctc.ir import Graph, Node
from rctc.ops import ACC_UPDATES
from rctc.ops import FUSABLE_PRODUCTS as PRODUCTS
from rctc.ops import FUSED_UPDATES as FUSED
from rctc.options import CompileOptions


def _single_use(node: Node) -> bool:
    return len(node.outputs[0].uses) == 1


def _match(g: Graph, upd: Node) -> tuple[Node, Node, Node | None] | None:
    grad = upd.inputs[3]
    transpose = None
    prod = grad.producer
    if prod is not None and prod.op_type == "Transpose" and _single_use(prod) and prod.inputs[0].producer is not None:
        transpose = prod
        prod = prod.inputs[0].producer
    if prod is None or prod.op_type != "Dequantize" or len(prod.inputs) != 2 or not _single_use(prod):
        return None
    acc_node = prod.inputs[0].producer
    if acc_node is None or acc_node.op_type not in PRODUCTS or not _single_use(acc_node):
        return None
    if len(acc_node.outputs[1].uses) != 1:
        return None
    return acc_node, prod, transpose


def _replace(g: Graph, upd: Node, op_type: str, inputs: list, attrs: dict, name: str, suffix: str) -> Node:
    """A new update node for ``upd`` (its state updates moved to the new outputs); ``upd`` goes."""
    outs = [(f"{o.name}{suffix}", o.shape, o.dtype) for o in upd.outputs]
    new = g.add_node(op_type, inputs, outs, attrs, name=name, domain="rctc", before=upd)
    for state, val in list(g.state_updates.items()):
        for old_out, new_out in zip(upd.outputs, new.outputs):
            if val == old_out.name:
                g.state_updates[state] = new_out.name
    g.remove_node(upd, force=True)
    return new


def _read_accumulators(g: Graph) -> None:
    """``Dequantize(acc, acc_e) -> update`` becomes the update's acc_twin reading ``(acc, acc_e)``."""
    for upd in [n for n in g.nodes if n.op_type in ACC_UPDATES]:
        dq = upd.inputs[3].producer
        if dq is None or dq.op_type != "Dequantize" or len(dq.inputs) != 2:
            continue
        acc, acc_e = dq.inputs
        if not np.issubdtype(np.dtype(acc.dtype), np.integer):
            continue
        p, exp_v, bits_v, lr = upd.inputs[0], upd.inputs[1], upd.inputs[2], upd.inputs[-1]
        attrs = {**upd.attrs, "alpha": float(dq.attrs.get("alpha", 1.0))}
        new = _replace(g, upd, ACC_UPDATES[upd.op_type], [p, exp_v, bits_v, acc, acc_e, *upd.inputs[4:-1], lr],
                       attrs, f"{upd.name}.acc", ".acc")
        new.meta.update(upd.meta)
        if not any(o.uses or o in g.outputs for o in dq.outputs):
            g.remove_node(dq)


def run(g: Graph, options: CompileOptions) -> None:
    for upd in [n for n in g.nodes if n.op_type in FUSED]:
        m = _match(g, upd)
        if m is None:
            continue
        acc_node, dq, transpose = m
        p, exp_v, bits_v, lr = upd.inputs[0], upd.inputs[1], upd.inputs[2], upd.inputs[-1]
        extra = list(upd.inputs[4:-1])  # the velocity and its exponent (momentum), AdamW's moments and count
        attrs = {f"product_{k}": v for k, v in acc_node.attrs.items()}
        attrs.update({
            "product": acc_node.op_type,
            "alpha": float(dq.attrs.get("alpha", 1.0)),
            "transpose": list(transpose.attrs["perm"]) if transpose is not None else [],
            "weight_decay": upd.attrs.get("weight_decay", 0.0),
            "rounding": upd.attrs.get("rounding", options.rounding),
        })
        for k in ("momentum", "velocity_bits", "beta1", "beta2", "epsilon"):
            if k in upd.attrs:
                attrs[k] = upd.attrs[k]
        fused = _replace(g, upd, FUSED[upd.op_type], [p, exp_v, bits_v, *acc_node.inputs, *extra, lr], attrs,
                         f"{p.name}/fused_update", ".fused")
        fused.meta.update({"phase": "update", "param": p.name, "fwd": acc_node.meta.get("fwd"),
                           "bits": acc_node.meta.get("bits")})
        for n in (transpose, dq, acc_node):
            if n is not None:
                g.remove_node(n)
    if getattr(options, "elementwise", "float") == "integer":
        _read_accumulators(g)
    g.remove_unused()

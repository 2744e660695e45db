"""assign_slots (rct mode): every parameter becomes an integer tensor with a bitwidth slot.

Needs: a training graph whose updates are ``SGDUpdate`` / ``MomentumUpdate`` / ``AdamWUpdate`` (add_optimizer).
Leaves: each float parameter P replaced in place by integers q (P = q * 2^exp, the exponent
chosen from P's initial max |value| at ``--bits``; stored in the int dtype of ``--max-bits``)
with int32 scalar buffers ``P.exp`` and ``P.bits``; every float consumer reads
``Dequantize(P, P.exp)``; updates become ``IntSGDUpdate`` / ``IntMomentumUpdate``, which
add stochastically rounded updates to q and clip to the current bits (so no float copy of
P exists in the training state); momentum velocities are integers with their own slot; AdamW's
moments become integer state with their own exponents (``IntAdamWUpdate``, docs/numerics.md).
"""

from __future__ import annotations

import numpy as np

from rctc.fixedpoint import choose_exponent, int_dtype_for_bits, quantize
from rctc.ir import BITS, EXPONENT, OPTIMIZER_STATE, Graph, Node, Role, Value
from rctc.ops import FLOAT_UPDATES
from rctc.options import CompileOptions
from rctc.slots import bits_name, exp_name


def make_slot(g: Graph, p: Value, bits: int, min_bits: int, max_bits: int) -> tuple[Value, Value]:
    """Quantise ``p`` in place to ``bits`` (storage dtype of ``max_bits``) and add its slot buffers
    (returned: the exponent and the bits, with their roles)."""
    data = np.asarray(p.data, np.float64)
    exp = choose_exponent(float(np.max(np.abs(data))) if data.size else 0.0, bits)
    q, _ = quantize(data, bits, "nearest", exp=exp)
    p.data = q.astype(int_dtype_for_bits(max_bits))
    p.dtype = p.data.dtype
    p.meta["slot"] = {"min_bits": min_bits, "max_bits": max_bits}
    exp_v = g.add_value(exp_name(p.name), (), np.int32, "buffer", np.array(exp, np.int32))
    bits_v = g.add_value(bits_name(p.name), (), np.int32, "buffer", np.array(bits, np.int32))
    exp_v.role, bits_v.role = Role(EXPONENT, p.name), Role(BITS, p.name)
    return exp_v, bits_v


def _gather_rows(g: Graph, p: Value, exp_v: Value) -> None:
    """Embedding lookups read integer rows and dequantise only those (no float copy of the table)."""
    for n, i in list(p.uses):
        if n.op_type != "Gather" or i != 0:
            continue
        y = n.outputs[0]
        rows = g.add_node("Gather", [p, n.inputs[1]], [(f"{y.name}.q", y.shape, p.dtype)], dict(n.attrs),
                          name=f"{n.name}.int", before=n)
        rows.meta.update(n.meta)
        dq = g.add_node("Dequantize", [rows.outputs[0], exp_v],
                        [(f"{y.name}.dq", y.shape, y.dtype)], name=f"{n.name}.dequantize", domain="rctc", before=n)
        dq.meta.update({"phase": n.phase, "fwd": n.name})
        g.replace_value(y, dq.outputs[0], take_name=True)
        g.remove_node(n)


def _dequantize_uses(g: Graph, p: Value, exp_v: Value, float_dtype: np.dtype) -> None:
    _gather_rows(g, p, exp_v)
    users = [(n, i) for n, i in p.uses
             if n.op_type not in FLOAT_UPDATES and not (n.op_type == "Gather" and i == 0)]
    if not users:
        return
    first = min(users, key=lambda u: g.nodes.index(u[0]))[0]
    dq = g.add_node("Dequantize", [p, exp_v], [(f"{p.name}.dq", p.shape, float_dtype)],
                    name=f"{p.name}/dequantize", domain="rctc", before=first)
    dq.meta["phase"] = "forward"
    for n, i in users:
        n.set_input(i, dq.outputs[0])


def _int_adamw_update(g: Graph, p: Value, exp_v: Value, bits_v: Value, upd: Node, options: CompileOptions) -> None:
    """``AdamWUpdate`` -> ``IntAdamWUpdate``: the moments become integer state (m int32, v int32,
    each with an int32 exponent, docs/numerics.md); the step count stays int64."""
    grad, m, v, t, lr = upd.inputs[1:6]
    ins, outs = [p, exp_v, bits_v, grad], [(f"{p.name}.q.new", p.shape, p.dtype)]
    for mom, dtype in ((m, np.int32), (v, np.int32)):
        g.state_updates.pop(mom.name, None)
        mom.data = np.zeros(mom.shape, dtype)
        mom.dtype = mom.data.dtype
        mom.role = Role(OPTIMIZER_STATE, p.name)
        mexp = g.add_value(exp_name(mom.name), (), np.int32, "buffer", np.array(0, np.int32))
        mexp.role = Role(EXPONENT, mom.name)
        ins += [mom, mexp]
        outs += [(f"{mom.name}.q.new", mom.shape, mom.dtype), (f"{mexp.name}.new", (), np.int32)]
    t.role = Role(OPTIMIZER_STATE, p.name)
    g.state_updates.pop(t.name, None)
    outs.append((f"{t.name}.int.new", (), np.int64))
    attrs = {k: upd.attrs[k] for k in ("beta1", "beta2", "epsilon", "weight_decay")}
    attrs["rounding"] = options.rounding
    node = g.add_node("IntAdamWUpdate", [*ins, t, lr], outs, attrs, name=f"{p.name}/int_update", domain="rctc",
                      before=upd)
    node.meta.update({"phase": "update", "param": p.name})
    for state, out in zip([p, *ins[4:], t], node.outputs):
        g.state_updates[state.name] = out.name
    g.remove_node(upd, force=True)


def _int_update(g: Graph, p: Value, exp_v: Value, bits_v: Value, options: CompileOptions) -> None:
    upd = next((n for n, _ in p.uses if n.op_type in FLOAT_UPDATES), None)
    if upd is None:
        return
    if upd.op_type == "AdamWUpdate":
        _int_adamw_update(g, p, exp_v, bits_v, upd, options)
        return
    grad, lr = upd.inputs[1], upd.inputs[-1]
    attrs = {"weight_decay": upd.attrs.get("weight_decay", 0.0), "rounding": options.rounding}
    outs = [(f"{p.name}.q.new", p.shape, p.dtype)]
    ins = [p, exp_v, bits_v, grad]
    op = "IntSGDUpdate"
    if upd.op_type == "MomentumUpdate":
        vel = upd.inputs[2]
        old_state = g.state_updates.pop(vel.name)
        vel.data = np.zeros(vel.shape, int_dtype_for_bits(options.max_bits))
        vel.dtype = vel.data.dtype
        vel.meta["slot"] = {"min_bits": options.max_bits, "max_bits": options.max_bits}
        vel_exp = g.add_value(exp_name(vel.name), (), np.int32, "buffer", np.array(0, np.int32))
        vel_bits = g.add_value(bits_name(vel.name), (), np.int32, "buffer", np.array(options.max_bits, np.int32))
        vel_exp.role, vel_bits.role = Role(EXPONENT, vel.name), Role(BITS, vel.name)
        ins += [vel, vel_exp]
        outs += [(f"{vel.name}.q.new", vel.shape, vel.dtype), (f"{vel.name}.exp.new", (), np.int32)]
        attrs["momentum"] = upd.attrs["momentum"]
        attrs["velocity_bits"] = options.max_bits
        op = "IntMomentumUpdate"
        del old_state
    node = g.add_node(op, ins + [lr], outs, attrs, name=f"{p.name}/int_update", domain="rctc", before=upd)
    node.meta.update({"phase": "update", "param": p.name})
    g.state_updates[p.name] = node.outputs[0].name
    if op == "IntMomentumUpdate":
        vel = upd.inputs[2]
        g.state_updates[vel.name] = node.outputs[1].name
        g.state_updates[vel_exp.name] = node.outputs[2].name
    g.remove_node(upd, force=True)


def run(g: Graph, options: CompileOptions) -> None:
    for p in g.params():
        if not np.issubdtype(p.dtype, np.floating):
            continue
        float_dtype = p.dtype
        exp_v, bits_v = make_slot(g, p, options.bits, options.min_bits, options.max_bits)
        _dequantize_uses(g, p, exp_v, float_dtype)
        _int_update(g, p, exp_v, bits_v, options)
    g.remove_unused()

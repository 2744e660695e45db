"""Typed roles for graphs saved before roles existed (.rct format 1 files from earlier rctc).

Needs: a loaded Graph whose values carry no ``Value.role``.
Leaves: the roles the analyses and the runtime read, recovered from what those files stored
explicitly: a slot parameter's (or velocity's) exponent / bits buffers from the slot naming
of ``rctc.slots`` (``exp_name`` / ``bits_name``), momentum buffers from the optimizer update
that reads them, parameter gradients from ``meta["param_grads"]``, and each integer product's
``lowered_from`` from the ``<node>.int`` name insert_quant gave it. This is the only module
that reads a meaning out of a name, and only for such files; graphs rctc builds now get their
roles from the passes that make the values.
"""

from __future__ import annotations

from rctc.ir import BITS, EXPONENT, GRAD, OPTIMIZER_STATE, Graph, Role
from rctc.ops import INT_PRODUCTS, get
from rctc.slots import bits_name, exp_name

#: momentum updates -> the input index of their velocity (from the definitions' operand names)
_VELOCITY_INPUT = {op: get(op).input_index(v) for op, v in
                   (("MomentumUpdate", "V"), ("IntMomentumUpdate", "vq"), ("FusedIntMomentumUpdate", "vq"),
                    ("IntAccMomentumUpdate", "vq"))}


def needs_roles(g: Graph) -> bool:
    return not any(v.role is not None for v in g.values.values())


def assign_roles(g: Graph) -> None:
    """Give a graph saved without roles the roles its consumers read (see the module docstring)."""
    owners = [v for v in g.values.values() if v.kind in ("param", "buffer") and "slot" in v.meta]
    for v in owners:
        for kind, name in ((EXPONENT, exp_name(v.name)), (BITS, bits_name(v.name))):
            if name in g.values:
                g.values[name].role = Role(kind, v.name)
    for n in g.nodes:
        if n.op_type in _VELOCITY_INPUT:
            vel = n.input(_VELOCITY_INPUT[n.op_type])
            if vel is not None and vel.role is None:
                vel.role = Role(OPTIMIZER_STATE, n.inputs[0].name)
        if n.op_type in INT_PRODUCTS and "lowered_from" not in n.meta and n.name.endswith(".int"):
            n.meta["lowered_from"] = n.name[: -len(".int")]
    for p, gname in g.meta.get("param_grads", {}).items():
        if gname in g.values:
            g.values[gname].role = Role(GRAD, p)


__all__ = ["assign_roles", "needs_roles"]

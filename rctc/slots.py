"""Bitwidth slots of RCT parameters: where a parameter's bits and exponent live.

A parameter ``P`` in rct mode is an integer array (dtype holding ``max_bits``) plus two
int32 scalar buffers with roles ``exponent`` / ``bits`` of ``P`` (named ``P.exp`` and ``P.bits``
for people reading the graph; code finds them by role: ``exp_value`` / ``bits_value``), the
current exponent and bitwidth, read by the kernels and changed only by the bitwidth
controller between steps. ``P.meta["slot"]`` holds the fixed bounds ``min_bits`` / ``max_bits``.
"""

from __future__ import annotations

from typing import Any

from rctc.ir import BITS, EXPONENT, Graph, Value


def exp_name(param: str) -> str:
    return f"{param}.exp"


def bits_name(param: str) -> str:
    return f"{param}.bits"


def exp_value(g: Graph, p: Value) -> Value:
    """The exponent buffer of slot parameter (or velocity) ``p``."""
    return g.with_role(EXPONENT, p.name)


def bits_value(g: Graph, p: Value) -> Value:
    """The bitwidth buffer of slot parameter (or velocity) ``p``."""
    return g.with_role(BITS, p.name)


def has_slot(p: Value) -> bool:
    return "slot" in p.meta


def read_slot(g: Graph, p: Value) -> dict[str, Any]:
    """The slot of parameter ``p`` now: bits, min_bits, max_bits, exp."""
    slot = p.meta["slot"]
    return {
        "bits": int(bits_value(g, p).data),
        "min_bits": int(slot["min_bits"]),
        "max_bits": int(slot["max_bits"]),
        "exp": int(exp_value(g, p).data),
    }

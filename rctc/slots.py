"""Bitwidth slots of RCT parameters: where a parameter's bits and exponent live.

A parameter ``P`` in rct mode is an integer array (dtype holding ``max_bits``) plus two
int32 scalar buffers, ``P.exp`` and ``P.bits`` (the current exponent and bitwidth, read by
the kernels and changed only by the bitwidth controller between steps). ``P.meta["slot"]``
holds the fixed bounds ``min_bits`` / ``max_bits``.
"""

from __future__ import annotations

from typing import Any

from rctc.ir import Graph, Value


def exp_name(param: str) -> str:
    return f"{param}.exp"


def bits_name(param: str) -> str:
    return f"{param}.bits"


def has_slot(p: Value) -> bool:
    return "slot" in p.meta


def read_slot(g: Graph, p: Value) -> dict[str, Any]:
    """The slot of parameter ``p`` now: bits, min_bits, max_bits, exp."""
    slot = p.meta["slot"]
    return {
        "bits": int(g.value(bits_name(p.name)).data),
        "min_bits": int(slot["min_bits"]),
        "max_bits": int(slot["max_bits"]),
        "exp": int(g.value(exp_name(p.name)).data),
    }

"""Gradient rules: one per differentiable op type, in a table. Importing this package fills ``RULES``.

Every rule is for an op type defined in ``rctc.ops`` (registering one for an undefined op type,
or twice, raises); the definition's ``differentiable`` names the inputs the rule gives a gradient.
A definition may carry its rule itself (``OpDef.grad``); those are added to ``RULES`` here.

A rule is ``fn(b: BackwardBuilder, node: Node, dys: list[Value | None]) -> list[Value | None]``:
given the gradients of the node's outputs (None where no gradient flows), it emits IR
nodes through ``b`` and returns one gradient per node input (None where the input needs
none: ask ``b.needs(value)`` before emitting work for an input).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from rctc.ops import REGISTRY, lookup

GradRule = Callable[..., list[Any]]
RULES: dict[str, GradRule] = {}


def rule(*op_types: str) -> Callable[[GradRule], GradRule]:
    """Register a gradient rule for op types; one rule per op type."""

    def deco(fn: GradRule) -> GradRule:
        for op in op_types:
            if lookup(op) is None:
                raise RuntimeError(f"gradient rule for {op!r}, which has no op definition (add one in rctc/ops/)")
            if op in RULES:
                raise RuntimeError(f"gradient rule for {op!r} registered twice")
            RULES[op] = fn
        return fn

    return deco


for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")
for _defn in REGISTRY.values():  # rules carried by their op definition
    if _defn.grad is not None:
        rule(_defn.op_type)(_defn.grad)

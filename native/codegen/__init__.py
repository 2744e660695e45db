"""The native code generator: one C file for a scheduled rct training graph (issue 16, item 1).

``generate(graph, nodes, outputs)`` writes the C source of a step over ``nodes`` (the graph's
schedule order); ``NativeStep`` builds it with :mod:`rctc.native.build` and runs it via ctypes.
"""

from __future__ import annotations

from rctc.native.codegen.emit import EMITTERS
from rctc.native.codegen.generator import CProgram, Slot, generate, refusal
from rctc.native.codegen.runner import NativeStep

__all__ = ["EMITTERS", "CProgram", "NativeStep", "Slot", "generate", "refusal"]

"""The cost functions: what one execution of one node costs, from its operands' shapes and widths.

``node_cost(node, ins, outs, counts)`` is the single definition of the cost model. The
static prediction calls it with the graph's shapes; the runtime counter calls it with the
shapes of the arrays the kernels really received and returned. ``Operand`` carries what a
cost depends on: shape, logical width, float or integer, traffic class and memory level.

What is counted (per execution):

* MACs of every GEMM-class product (Conv, Gemm, MatMul, ConvGradInput, ConvGradWeight,
  their ``Int*`` twins and the product inside ``FusedIntUpdate`` / ``FusedIntMomentumUpdate``)
  at the operand widths and the accumulator width. QAT: a forward product of fake-quantised operands counts at the
  fake-quant bits with an int32 accumulator; backward products are FP32.
* element-wise ops by kind (add, mult, cmp, special = exp/log/sqrt/division) and width,
  from each op's definition (``rctc.ops``: its ``cost`` function, built from ``rctc.ops.costs``).
* bytes moved: every node reads each distinct input once and writes each output once, at
  the value's logical width (packed: ``ceil(size * bits / 8)``), to the value's memory level
  and traffic class. Layout ops (Reshape, Transpose, ...) are views and move nothing;
  Gather reads only the rows it gathers; an integer product's accumulator that only its
  Dequantize reads (class ``epilogue``) stays in the product's output stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from rctc.analysis.counts import Counts
from rctc.ir import Node
from rctc.ops import PRODUCT_OPERANDS as PRODUCTS
from rctc.ops import VIEW_OPS, lookup
from rctc.ops.costs import contraction, per_output, product_macs

_UNKNOWN = per_output(add=1)


class Operand(NamedTuple):
    """One input or output of a node as the cost model sees it."""

    shape: tuple[int, ...]
    bits: int
    is_float: bool
    kind: str = "activation"
    level: str = "dram"
    size: int = -1  # math.prod(shape), filled by ``operand``

    @classmethod
    def make(cls, shape: tuple[int, ...], bits: int, is_float: bool, kind: str = "activation",
             level: str = "dram") -> Operand:
        return cls(shape, bits, is_float, kind, level, math.prod(shape))

    @property
    def width(self) -> str:
        return f"{'fp' if self.is_float else 'int'}{self.bits}"

    def nbytes(self, elements: int | None = None) -> int:
        n = self.size if elements is None else elements
        return (n * self.bits + 7) // 8


# ----------------------------------------------------------------------------- traffic
def _traffic(node: Node, ins: Sequence[Operand | None], outs: Sequence[Operand], counts: Counts) -> None:
    if node.op_type in VIEW_OPS:
        return
    seen: set[str] = set()
    for k, (v, t) in enumerate(zip(node.inputs, ins)):
        if v is None or t is None or v.name in seen:
            continue
        seen.add(v.name)
        elements = outs[0].size if node.op_type == "Gather" and k == 0 else None
        if t.kind != "epilogue":
            counts.add_bytes(t.level, t.kind, "read", t.nbytes(elements))
    for t in outs:
        if t.kind != "epilogue":
            counts.add_bytes(t.level, t.kind, "write", t.nbytes())


def node_cost(node: Node, ins: Sequence[Operand | None], outs: Sequence[Operand], counts: Counts,
              fq: Callable[[int], int | None] | None = None) -> None:
    """Add what one execution of ``node`` costs to ``counts``: its definition's cost function
    (an op type without a definition costs one add per output) plus the bytes it moves.

    ``fq(i)`` gives the fake-quant bits of input ``i`` (QAT forward products), or None.
    """
    d = lookup(node.op_type)
    (d.cost if d is not None else _UNKNOWN)(node, ins, outs, counts, fq)
    _traffic(node, ins, outs, counts)


__all__ = ["PRODUCTS", "VIEW_OPS", "Operand", "contraction", "node_cost", "product_macs"]

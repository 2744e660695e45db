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
  from a per-op table (``_ELEMENTWISE``; an op it does not list costs one add per output).
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

VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Shape"}
# op -> (input index of operand A, input index of operand B)
PRODUCTS: dict[str, tuple[int, int]] = {
    "Conv": (0, 1), "ConvGradInput": (0, 1), "ConvGradWeight": (0, 1), "Gemm": (0, 1), "MatMul": (0, 1),
    "IntConv": (0, 2), "IntConvGradInput": (0, 2), "IntConvGradWeight": (0, 2), "IntGemm": (0, 2),
    "IntMatMul": (0, 2),
}


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


# ----------------------------------------------------------------------------- products
def product_macs(op: str, attrs: dict, a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> int:
    """Multiply-accumulates of one product; ``op`` without the ``Int`` prefix."""
    if op == "Conv":
        return math.prod(out) * math.prod(b[1:])
    if op == "ConvGradInput":  # dY (N, M, out...) x W (M, C/g, k...)
        return math.prod(a) * math.prod(b[1:])
    if op == "ConvGradWeight":  # dY (N, M, out...) x X -> W (M, C/g, k...)
        return math.prod(a) * math.prod(out[1:])
    if op == "Gemm":
        return math.prod(out) * int(a[0] if attrs.get("transA", 0) else a[-1])
    if op == "MatMul":
        return math.prod(out) * int(a[-1])
    raise ValueError(f"not a product: {op}")


def contraction(op: str, attrs: dict, a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """K, the summed length, for the accumulator bound (as insert_quant computes it)."""
    if op == "Conv":
        return math.prod(b[1:])
    if op == "ConvGradInput":
        return b[0] // int(attrs.get("group", 1)) * math.prod(b[2:])
    if op == "ConvGradWeight":
        return a[0] * math.prod(a[2:])
    if op == "Gemm":
        return int(a[0] if attrs.get("transA", 0) else a[-1])
    return int(a[-1])


def _mac_key(a: Operand, b: Operand, acc_bits: int) -> str:
    return f"int{a.bits}*int{b.bits}+int{acc_bits}"


def _product(node: Node, ins: Sequence[Operand | None], outs: Sequence[Operand], counts: Counts,
             fq: Callable[[int], int | None]) -> None:
    op = node.op_type
    ia, ib = PRODUCTS[op]
    a, b = ins[ia], ins[ib]
    assert a is not None and b is not None
    base = op[3:] if op.startswith("Int") else op
    macs = product_macs(base, node.attrs, a.shape, b.shape, outs[0].shape)
    if op.startswith("Int"):
        counts.add_macs(_mac_key(a, b, outs[0].bits), macs)
        return
    fa, fb = fq(ia), fq(ib)
    if node.meta.get("phase", "forward") == "forward" and fa is not None and fb is not None:
        counts.add_macs(f"int{fa}*int{fb}+int32", macs)
        return
    w = max(o.bits for o in (a, b, outs[0]) if o.is_float) if any(o.is_float for o in (a, b, outs[0])) else 32
    counts.add_macs(f"fp{w}*fp{w}+fp{w}", macs)


def _fused_update(node: Node, ins: Sequence[Operand | None], counts: Counts) -> None:
    """FusedIntUpdate(p, e, bits, qa, ea, qb, eb, lr) and FusedIntMomentumUpdate(.., vq, ve, lr):
    product MACs + the update of p (and of the velocity)."""
    p, qa, qb = ins[0], ins[3], ins[5]
    assert p is not None and qa is not None and qb is not None
    op = str(node.attrs["product"])[3:]
    attrs = {k[len("product_"):]: v for k, v in node.attrs.items() if k.startswith("product_")}
    out_shape = p.shape
    perm = node.attrs.get("transpose") or None
    if perm:  # the product's own output shape, before the transpose back to p's layout
        inv = [0] * len(perm)
        for i, j in enumerate(perm):
            inv[j] = i
        out_shape = tuple(p.shape[inv[i]] for i in range(len(perm)))
    k = contraction(op, attrs, qa.shape, qb.shape)
    acc = 32 if k * 2 ** (qa.bits - 1) * 2 ** (qb.bits - 1) < 2**31 else 64
    counts.add_macs(_mac_key(qa, qb, acc), product_macs(op, attrs, qa.shape, qb.shape, out_shape))
    if node.op_type == "FusedIntMomentumUpdate":
        _momentum_update(node, p, counts)
        counts.add_op("mult", "fp32", p.size)  # the product's scaling into a float gradient
    else:
        _int_update(node, p, counts, extra_float=0)


def _momentum_update(node: Node, p: Operand, counts: Counts) -> None:
    _int_update(node, p, counts, extra_float=2)
    counts.add_op("cmp", "fp32", 3 * p.size)  # velocity absmax + clip


def _int_update(node: Node, p: Operand, counts: Counts, extra_float: int) -> None:
    e = p.size
    wd = 1 if float(node.attrs.get("weight_decay", 0.0)) else 0
    counts.add_op("mult", "fp32", e * (1 + wd + extra_float))  # scale into last-bit units (+ decay)
    counts.add_op("add", "fp32", e * (1 + wd + extra_float))  # rounding (stochastic: + random)
    counts.add_op("add", p.width, e)  # q + du
    counts.add_op("cmp", p.width, 2 * e)  # clip to the slot's range


# ----------------------------------------------------------------------------- element-wise
def _e(outs: Sequence[Operand]) -> int:
    return outs[0].size if outs else 0


def _kernel(node: Node) -> int:
    return math.prod(int(k) for k in node.attrs.get("kernel_shape", [1]))


def _rows(x: Operand, axis: int) -> int:
    axis = axis % len(x.shape) if x.shape else 0
    return math.prod(x.shape[:axis])


def _channels(x: Operand) -> int:
    return x.shape[1] if len(x.shape) > 1 else 1


OpCounts = dict[str, int]
_Rule = Callable[[Node, Sequence[Operand | None], Sequence[Operand]], OpCounts]


def _per_output(**kinds: int) -> _Rule:
    return lambda n, i, o: {k: c * _e(o) for k, c in kinds.items()}


def _in(i: Sequence[Operand | None], k: int = 0) -> Operand:
    v = i[k]
    assert v is not None
    return v


_ELEMENTWISE: dict[str, _Rule] = {
    "Relu": _per_output(cmp=1), "ReluGrad": _per_output(cmp=1),
    "LeakyRelu": _per_output(cmp=1, mult=1), "LeakyReluGrad": _per_output(cmp=1, mult=1),
    "Clip": _per_output(cmp=2), "ClipGrad": _per_output(cmp=2),
    "Sigmoid": _per_output(special=1, add=1), "Tanh": _per_output(special=1, add=1),
    "SigmoidGrad": _per_output(mult=2, add=1), "TanhGrad": _per_output(mult=2, add=1),
    "Exp": _per_output(special=1), "Sqrt": _per_output(special=1), "Pow": _per_output(special=1),
    "Div": _per_output(special=1), "Add": _per_output(add=1), "Sub": _per_output(add=1),
    "Neg": _per_output(add=1), "Mul": _per_output(mult=1),
    # activations (runtime/kernels/activations.py) and their gradients (dy * derivative)
    "HardSigmoid": _per_output(mult=1, add=1, cmp=2), "HardSigmoidGrad": _per_output(mult=2, add=1, cmp=2),
    "HardSwish": _per_output(mult=2, add=1, cmp=2), "HardSwishGrad": _per_output(mult=2, add=1, cmp=2),
    "Elu": _per_output(special=1, mult=1, cmp=1), "EluGrad": _per_output(special=1, mult=2, cmp=1),
    "Selu": _per_output(special=1, mult=2, cmp=1), "SeluGrad": _per_output(special=1, mult=2, cmp=1),
    "Celu": _per_output(special=1, mult=2, cmp=1), "CeluGrad": _per_output(special=1, mult=2, cmp=1),
    "Softplus": _per_output(special=2, add=1, cmp=1), "SoftplusGrad": _per_output(special=2, add=1, mult=1),
    "Softsign": _per_output(special=1, add=1), "SoftsignGrad": _per_output(special=1, add=1, mult=2),
    "Erf": _per_output(special=2, mult=4, add=4), "ErfGrad": _per_output(special=1, mult=3),
    "ExpGrad": _per_output(special=1, mult=1), "Log": _per_output(special=1),
    "LogGrad": _per_output(special=1, mult=1), "SqrtGrad": _per_output(special=2, mult=1),
    "Reciprocal": _per_output(special=1), "ReciprocalGrad": _per_output(special=1, mult=2),
    "Abs": _per_output(cmp=1), "AbsGrad": _per_output(cmp=1, mult=1),
    "PowGrad": _per_output(special=1, mult=2, add=1),
    "Sum": lambda n, i, o: {"add": _e(o) * max(len([v for v in i if v is not None]) - 1, 0)},
    "Dropout": _per_output(cmp=1, mult=1), "DropoutGrad": _per_output(mult=1),
    "MaxPool": lambda n, i, o: {"cmp": _e(o) * (_kernel(n) - 1)},
    "AveragePool": lambda n, i, o: {"add": _e(o) * (_kernel(n) - 1), "mult": _e(o)},
    "GlobalAveragePool": lambda n, i, o: {"add": _in(i).size - _e(o), "mult": _e(o)},
    "GlobalMaxPool": lambda n, i, o: {"cmp": _in(i).size - _e(o)},
    "MaxPoolGrad": lambda n, i, o: {"cmp": _in(i).size * (_kernel(n) - 1), "add": _in(i).size},
    "AveragePoolGrad": lambda n, i, o: {"mult": _in(i).size, "add": _in(i).size * _kernel(n)},
    "GlobalAveragePoolGrad": _per_output(mult=1),
    "BatchNormalization": lambda n, i, o: {"add": 4 * _e(o) + 2 * _channels(o[0]),
                                           "mult": 3 * _e(o) + 4 * _channels(o[0]), "special": _channels(o[0])},
    "BatchNormGrad": lambda n, i, o: {"add": 4 * _e(o), "mult": 4 * _e(o) + 2 * _channels(o[0])},
    "LayerNormalization": lambda n, i, o: {"add": 4 * _e(o), "mult": 3 * _e(o),
                                           "special": _rows(o[0], int(n.attrs.get("axis", -1)))},
    "LayerNormGrad": _per_output(add=4, mult=4),
    "Softmax": _per_output(cmp=1, add=2, special=2),
    "SoftmaxGrad": _per_output(mult=2, add=2),
    "LogSoftmax": lambda n, i, o: {"cmp": _e(o), "add": 2 * _e(o), "special": _e(o) + _rows(o[0], -1)},
    "LogSoftmaxGrad": _per_output(special=1, mult=1, add=2),
    "SoftmaxCrossEntropy": lambda n, i, o: {"cmp": _in(i).size, "add": 2 * _in(i).size + 2 * _rows(_in(i), -1),
                                            "special": _in(i).size + _rows(_in(i), -1),
                                            "mult": _rows(_in(i), -1)},
    "SoftmaxCrossEntropyGrad": _per_output(special=1, mult=2, add=1),
    "MSELoss": lambda n, i, o: {"add": 2 * _in(i).size, "mult": _in(i).size},
    "MSELossGrad": _per_output(add=1, mult=2),
    "ReduceSum": lambda n, i, o: {"add": _in(i).size - _e(o)},
    "ReduceSumTo": lambda n, i, o: {"add": _in(i).size - _e(o)},
    "ConvGradBias": lambda n, i, o: {"add": _in(i).size - _e(o)},
    "ReduceMean": lambda n, i, o: {"add": _in(i).size - _e(o), "mult": _e(o)},
    "ReduceMeanGrad": _per_output(mult=1), "ReduceSumGrad": _per_output(),
    "GatherGrad": lambda n, i, o: {"add": _in(i).size},
    "ArgMax": lambda n, i, o: {"cmp": _in(i).size},
    "LRN": lambda n, i, o: {"add": _e(o) * int(n.attrs.get("size", 1)), "mult": 2 * _e(o), "special": _e(o)},
    "LRNGrad": lambda n, i, o: {"add": _e(o) * (2 * int(n.attrs.get("size", 1)) + 1), "mult": 7 * _e(o),
                                "special": 3 * _e(o)},
    "QuantAct": _per_output(cmp=3, mult=1, add=1),
    "FakeQuant": _per_output(cmp=3, mult=2, add=1),
    "QuantGrad": lambda n, i, o: {"cmp": 3 * _e(o), "mult": _e(o),
                                  "add": _e(o) * (2 if n.attrs.get("rounding") == "stochastic" else 1)},
    "Dequantize": lambda n, i, o: {"mult": _e(o), "add": _e(o) if len(i) > 2 and i[2] is not None else 0},
    "SGDUpdate": lambda n, i, o: {k: _e(o) * (1 + (1 if n.attrs.get("weight_decay") else 0)) for k in ("add", "mult")},
    "MomentumUpdate": lambda n, i, o: {k: _e(o) * (2 + (1 if n.attrs.get("weight_decay") else 0))
                                       for k in ("add", "mult")},
    # AdamW per element: 2 moment updates (3 mult, 2 add), the step (2 mult, 1 add), the decay (1 mult);
    # sqrt and the division are special
    "AdamWUpdate": lambda n, i, o: {"mult": _e(o) * (5 + (1 if n.attrs.get("weight_decay") else 0)),
                                    "add": 3 * _e(o), "special": 2 * _e(o)},
}
_NO_OPS = VIEW_OPS | {"Cast", "Concat", "ConcatGrad", "Slice", "Expand", "Gather"}


def _compute_width(ins: Sequence[Operand | None], outs: Sequence[Operand]) -> str:
    for o in list(outs) + [v for v in ins if v is not None]:
        if o.is_float:
            return o.width
    return outs[0].width if outs else "fp32"


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
    """Add what one execution of ``node`` costs to ``counts``.

    ``fq(i)`` gives the fake-quant bits of input ``i`` (QAT forward products), or None.
    """
    op = node.op_type
    if op in PRODUCTS:
        _product(node, ins, outs, counts, fq or (lambda i: None))
    elif op in ("FusedIntUpdate", "FusedIntMomentumUpdate"):
        _fused_update(node, ins, counts)
    elif op == "IntSGDUpdate":
        _int_update(node, _in(ins), counts, extra_float=0)
    elif op == "IntMomentumUpdate":
        _momentum_update(node, _in(ins), counts)
    elif op not in _NO_OPS:
        rule = _ELEMENTWISE.get(op, _per_output(add=1))
        width = _compute_width(ins, outs)
        for kind, n in rule(node, ins, outs).items():
            counts.add_op(kind, width, n)
    _traffic(node, ins, outs, counts)


__all__ = ["PRODUCTS", "VIEW_OPS", "Operand", "contraction", "node_cost", "product_macs"]

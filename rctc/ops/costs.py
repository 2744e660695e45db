"""Cost functions of the op definitions: what one execution of a node computes.

Needs: a node (attributes, op type, phase), its operands as the cost model sees them
(``shape``, ``size``, ``bits``, ``is_float``, ``width``: ``rctc.analysis.costs.Operand``) and a
counter with ``add_macs(key, n)`` / ``add_op(kind, width, n)``.
Leaves: one builder per shape of rule: ``ops(...)`` for element-wise kinds (add, mult, cmp,
special = exp/log/sqrt/division) at the width the op computes in, ``product`` for GEMM-class
products at their operand and accumulator widths, the integer / fused updates, and
``free`` for ops that compute nothing (views, copies). Bytes moved are counted by the
analysis (``rctc.analysis.costs``), not here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from rctc.ops.schema import CostFn

OpCounts = dict[str, int]
CountRule = Callable[[Any, Sequence[Any], Sequence[Any]], OpCounts]


# ----------------------------------------------------------------------------- helpers
def e(outs: Sequence[Any]) -> int:
    """Elements of the first output."""
    return outs[0].size if outs else 0


def inp(ins: Sequence[Any], k: int = 0) -> Any:
    v = ins[k]
    assert v is not None
    return v


def kernel_size(node: Any) -> int:
    return math.prod(int(k) for k in node.attrs.get("kernel_shape", [1]))


def rows(x: Any, axis: int) -> int:
    axis = axis % len(x.shape) if x.shape else 0
    return math.prod(x.shape[:axis])


def channels(x: Any) -> int:
    return x.shape[1] if len(x.shape) > 1 else 1


def _compute_width(ins: Sequence[Any], outs: Sequence[Any]) -> str:
    for o in list(outs) + [v for v in ins if v is not None]:
        if o.is_float:
            return o.width
    return outs[0].width if outs else "fp32"


# ----------------------------------------------------------------------------- element-wise
def ops(rule: CountRule) -> CostFn:
    """Element-wise kinds from ``rule(node, ins, outs) -> {kind: count}``, at the compute width."""

    def cost(node: Any, ins: Sequence[Any], outs: Sequence[Any], counts: Any, fq: Any = None) -> None:
        width = _compute_width(ins, outs)
        for kind, n in rule(node, ins, outs).items():
            counts.add_op(kind, width, n)

    return cost


def per_output(**kinds: int) -> CostFn:
    """``kinds`` operations per output element."""
    return ops(lambda n, i, o: {k: c * e(o) for k, c in kinds.items()})


def free(node: Any, ins: Sequence[Any], outs: Sequence[Any], counts: Any, fq: Any = None) -> None:
    """Computes nothing (a view or a copy): only its traffic counts."""


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
    """K, the summed length, for the accumulator bound ``K * 2^(b1-1) * 2^(b2-1)``."""
    if op == "Conv":
        return math.prod(b[1:])
    if op == "ConvGradInput":
        return b[0] // int(attrs.get("group", 1)) * math.prod(b[2:])
    if op == "ConvGradWeight":
        return a[0] * math.prod(a[2:])
    if op == "Gemm":
        return int(a[0] if attrs.get("transA", 0) else a[-1])
    return int(a[-1])


def _mac_key(a: Any, b: Any, acc_bits: int) -> str:
    return f"int{a.bits}*int{b.bits}+int{acc_bits}"


def product(base: str, ia: int, ib: int, integer: bool) -> CostFn:
    """MACs of product ``base`` with factors at inputs ``ia`` / ``ib``.

    Integer twins count at their operand widths and accumulator width; a QAT forward product
    of fake-quantised operands (``fq(i)`` gives their bits) counts as an int32-accumulating
    integer product; everything else in float at the widest float operand.
    """

    def cost(node: Any, ins: Sequence[Any], outs: Sequence[Any], counts: Any, fq: Any = None) -> None:
        a, b = ins[ia], ins[ib]
        assert a is not None and b is not None
        macs = product_macs(base, node.attrs, a.shape, b.shape, outs[0].shape)
        if integer:
            counts.add_macs(_mac_key(a, b, outs[0].bits), macs)
            return
        fa, fb = (fq(ia), fq(ib)) if fq is not None else (None, None)
        if node.meta.get("phase", "forward") == "forward" and fa is not None and fb is not None:
            counts.add_macs(f"int{fa}*int{fb}+int32", macs)
            return
        floats = [o.bits for o in (a, b, outs[0]) if o.is_float]
        w = max(floats) if floats else 32
        counts.add_macs(f"fp{w}*fp{w}+fp{w}", macs)

    return cost


# ----------------------------------------------------------------------------- updates
def _int_update_counts(node: Any, p: Any, counts: Any, extra_float: int) -> None:
    n = p.size
    wd = 1 if float(node.attrs.get("weight_decay", 0.0)) else 0
    counts.add_op("mult", "fp32", n * (1 + wd + extra_float))  # scale into last-bit units (+ decay)
    counts.add_op("add", "fp32", n * (1 + wd + extra_float))  # rounding (stochastic: + random)
    counts.add_op("add", p.width, n)  # q + du
    counts.add_op("cmp", p.width, 2 * n)  # clip to the slot's range


def _momentum_counts(node: Any, p: Any, counts: Any) -> None:
    """Integer momentum SGD per element (docs/numerics.md "Momentum SGD in rct mode"): the
    products MU vq, CA g (+ W q) and vq' lr_m in int64, the gradient's rounding, the alignment
    and the sum of the terms, the velocity's and the step's roundings as int64 adds; the absmax
    of the gradient and of the velocity sum (the per-tensor exponents)."""
    n = p.size
    wd = 1 if float(node.attrs.get("weight_decay", 0.0)) else 0
    counts.add_op("mult", "int64", n * (3 + wd))
    counts.add_op("add", "int64", n * (8 + 2 * wd))
    counts.add_op("cmp", "int64", 2 * n)
    counts.add_op("add", p.width, n)  # q + step
    counts.add_op("cmp", p.width, 2 * n)  # clip to the slot's range


def int_update(node: Any, ins: Sequence[Any], outs: Sequence[Any], counts: Any, fq: Any = None) -> None:
    _int_update_counts(node, inp(ins), counts, extra_float=0)


def int_momentum_update(node: Any, ins: Sequence[Any], outs: Sequence[Any], counts: Any, fq: Any = None) -> None:
    """IntMomentumUpdate / IntAccMomentumUpdate: the integer momentum step (+ the float gradient's rounding)."""
    p = inp(ins)
    _momentum_counts(node, p, counts)
    if ins[3] is not None and ins[3].is_float:
        counts.add_op("mult", "fp32", p.size)


def _adamw_counts(node: Any, p: Any, counts: Any) -> None:
    """Integer AdamW per element (docs/numerics.md): moments 5 int64 products, the step's
    product and division, isqrt of v, the roundings / alignments as int64 adds."""
    n = p.size
    wd = 1 if float(node.attrs.get("weight_decay", 0.0)) else 0
    counts.add_op("mult", "int64", n * (7 + wd))
    counts.add_op("add", "int64", n * (14 + 2 * wd))
    counts.add_op("cmp", "int64", 3 * n)  # absmax of the gradient, m, v (the per-tensor exponents)
    counts.add_op("special", "int64", 2 * n)  # isqrt and the division of the step
    counts.add_op("add", p.width, n)  # q + step
    counts.add_op("cmp", p.width, 2 * n)  # clip to the slot's range


def int_adamw_update(node: Any, ins: Sequence[Any], outs: Sequence[Any], counts: Any, fq: Any = None) -> None:
    """IntAdamWUpdate / IntAccAdamWUpdate: the integer AdamW step (+ the float gradient's rounding)."""
    p = inp(ins)
    _adamw_counts(node, p, counts)
    if ins[3] is not None and ins[3].is_float:
        counts.add_op("mult", "fp32", p.size)


def fused_adamw_update(node: Any, ins: Sequence[Any], outs: Sequence[Any], counts: Any, fq: Any = None) -> None:
    """FusedIntAdamWUpdate: the weight-gradient product's MACs + the integer AdamW step."""
    _adamw_counts(node, _fused_macs(node, ins, counts), counts)


def _fused_macs(node: Any, ins: Sequence[Any], counts: Any) -> Any:
    """The MACs of a fused update's weight-gradient product (inputs p, e, bits, qa, ea, qb, eb, ...);
    returns p."""
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
    return p


def fused_update(momentum: bool) -> CostFn:
    """FusedIntUpdate(p, e, bits, qa, ea, qb, eb, lr) / FusedIntMomentumUpdate(.., vq, ve, lr):
    the product's MACs + the update of p (and of the velocity)."""

    def cost(node: Any, ins: Sequence[Any], outs: Sequence[Any], counts: Any, fq: Any = None) -> None:
        p = _fused_macs(node, ins, counts)
        if momentum:
            _momentum_counts(node, p, counts)
        else:
            _int_update_counts(node, p, counts, extra_float=0)

    return cost


__all__ = ["channels", "contraction", "e", "free", "fused_adamw_update", "fused_update", "inp",
           "int_adamw_update", "int_momentum_update", "int_update", "kernel_size", "ops", "per_output", "product",
           "product_macs", "rows"]

"""The op definition (``OpDef``) and the registry every other table is derived from.

Needs: nothing but the standard library (this module is the bottom layer: the IR, the
frontend, the passes, the analyses and every backend read it; it imports none of them).
Leaves: ``REGISTRY``, one ``OpDef`` per op type (registering an op type twice raises
``DuplicateOpError``), and ``with_trait`` / ``get`` to query it. Backends and the gradient
rules attach their implementations in their own tables keyed by these op types (the xDSL
way: the definition does not import its kernels); ``tests/test_op_registry.py`` checks the
tables agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rctc.errors import RctcError

# ----------------------------------------------------------------------------- traits
PRODUCT = "product"  #: a GEMM-class product (MACs counted at the operand widths)
LAYOUT = "layout"  #: rearranges its input's elements (runs on integers as well as floats)
RESHAPE = "reshape"  #: a layout op that keeps the element order (folding keeps the constant's name)
VIEW = "view"  #: moves no bytes (a reshape, a transpose or an alias of its input)
ALIAS = "alias"  #: its output is its input (Identity): keeps the input's width
ELEMENTWISE = "element-wise"  #: one output element per input element
UNARY_ACTIVATION = "unary-activation"  #: gradient ``<Op>Grad(dy, x)`` with the forward's attributes
INTEGER = "integer-capable"  #: has an integer kernel in rct mode
NEEDS_RNG = "needs-rng"  #: draws from the kernel's random stream (dropout, stochastic rounding)
GRADIENT = "gradient"  #: emitted by a gradient rule (backward only)
LOSS = "loss"  #: a training loss added by add_loss
UPDATE = "optimizer-update"  #: updates a parameter (and its optimizer state)
QUANTISE = "quantise"  #: output 0 is an integer at the node's ``bits``
QUANT_HELPER = "quant-helper"  #: quantise / dequantise plumbing around a product
FUSABLE_WEIGHT_GRAD = "fusable-weight-gradient"  #: an integer product fuse_updates may fold into an update
WEIGHTED = "weighted"  #: a float constant in a parameter slot is always a weight (import), whatever its size

TRAITS = frozenset({PRODUCT, LAYOUT, RESHAPE, VIEW, ALIAS, ELEMENTWISE, UNARY_ACTIVATION, INTEGER, NEEDS_RNG,
                    GRADIENT, LOSS, UPDATE, QUANTISE, QUANT_HELPER, FUSABLE_WEIGHT_GRAD, WEIGHTED})

FAMILIES = ("products", "elementwise", "activations", "normalisation", "pooling", "layout", "loss", "optimizer",
            "quant")
RCT_LOWERINGS = ("integer", "float-island")

#: ``fn(node, ins, outs, counts, fq)``: adds one execution's cost to ``counts`` (see rctc.ops.costs)
CostFn = Callable[..., None]


class DuplicateOpError(RctcError):
    """An op type was defined twice (a programming error in rctc, not a user error)."""


@dataclass(frozen=True)
class OpDef:
    """Everything rctc knows about one op type.

    ``inputs`` / ``outputs`` name the operands (a trailing ``?`` marks an optional one, a
    leading ``*`` a variadic one); ``differentiable`` names the inputs a gradient flows to;
    ``rct`` says how rct mode runs the op ("integer", "float-island", or None when rct mode
    never contains it); ``int_twin`` is the integer op insert_quant lowers it to;
    ``product_operands`` the input indices of the two factors of a product;
    ``param_slots`` / ``buffer_slots`` the inputs that hold parameters / persistent buffers
    when the op is imported from ONNX; ``fused_twin`` the fused form fuse_updates makes;
    ``acc_twin`` the form it makes of an update whose gradient is an integer accumulator;
    ``grad`` the gradient rule, ``fn(b, node, dys) -> one gradient per input`` (see
    ``rctc.passes.grad_rules``; it talks to the graph only through the builder ``b``), when the
    definition carries it (older ops register theirs in ``rctc/passes/grad_rules/``);
    ``c_kernel`` the C kernel's name (filled as native kernels land);
    ``rct_lowering`` the integer op types rct's element-wise lowering (``--elementwise integer``,
    ``rctc/passes/int_lowerings.py``, which refuses to emit anything else for this op) replaces a
    node of this float op with (the op's own type: it runs itself on integers, as Gather does on
    a parameter's stored integers, ``passes/assign_slots.py``); ``rct_float_when`` the attributes /
    operands under which that rule refuses and the node stays a float island ("" when it never does);
    ``limits`` what rctc refuses of the op, each a phrase of the one-line error it gives (``rctc ops``
    lists them; the ONNX conformance test checks every refused case against them).
    """

    op_type: str
    family: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ("Y",)
    domain: str = ""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    traits: frozenset[str] = frozenset()
    differentiable: tuple[str, ...] = ()
    modes: frozenset[str] = frozenset({"fp32", "qat", "rct"})
    rct: str | None = "float-island"
    cost: CostFn | None = None
    int_twin: str | None = None
    product_operands: tuple[int, int] | None = None
    param_slots: tuple[int, ...] = ()
    buffer_slots: tuple[int, ...] = ()
    fused_twin: str | None = None
    acc_twin: str | None = None
    grad: Callable[..., list[Any]] | None = None
    c_kernel: str | None = None
    rct_lowering: tuple[str, ...] = ()
    rct_float_when: str = ""
    limits: tuple[str, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))
        bad = set(self.traits) - TRAITS
        if bad:
            raise ValueError(f"op {self.op_type}: unknown trait(s) {sorted(bad)}")
        if self.family not in FAMILIES:
            raise ValueError(f"op {self.op_type}: unknown family {self.family!r}")
        if self.rct is not None and self.rct not in RCT_LOWERINGS:
            raise ValueError(f"op {self.op_type}: rct must be one of {RCT_LOWERINGS} or None")
        if (self.rct is None) == ("rct" in self.modes):
            raise ValueError(f"op {self.op_type}: rct lowering {self.rct!r} disagrees with modes {sorted(self.modes)}")
        names = [n.strip("?*") for n in self.inputs]
        unknown = [d for d in self.differentiable if d not in names]
        if unknown:
            raise ValueError(f"op {self.op_type}: differentiable input(s) {unknown} are not inputs {names}")
        if self.rct_lowering and self.rct != "float-island":
            raise ValueError(f"op {self.op_type}: an rct lowering replaces a float op (rct='float-island')")
        if self.rct_float_when and not self.rct_lowering:
            raise ValueError(f"op {self.op_type}: rct_float_when without an rct lowering")
        if self.cost is None:
            raise ValueError(f"op {self.op_type}: no cost function")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(n.strip("?*") for n in self.inputs)

    def input_index(self, name: str) -> int:
        return self.input_names.index(name)

    def has(self, trait: str) -> bool:
        return trait in self.traits


REGISTRY: dict[str, OpDef] = {}


def define(defn: OpDef) -> OpDef:
    """Register one definition; an op type defined twice raises ``DuplicateOpError``."""
    if defn.op_type in REGISTRY:
        raise DuplicateOpError(f"op {defn.op_type!r} defined twice ({REGISTRY[defn.op_type].family} and "
                               f"{defn.family})")
    REGISTRY[defn.op_type] = defn
    return defn


def definer(family: str, **defaults: Any) -> Callable[..., OpDef]:
    """``op = definer("pooling")`` then ``op("MaxPool", ("X",), ...)``: defines ops of one family."""

    def op(op_type: str, inputs: Iterable[str], **kw: Any) -> OpDef:
        args = {**defaults, **kw}
        if "traits" in args:
            args["traits"] = frozenset(args["traits"])
        if "modes" in args:
            args["modes"] = frozenset(args["modes"])
        for key in ("rct_lowering", "limits"):
            if key in args:
                args[key] = tuple(args[key])
        return define(OpDef(op_type, family, tuple(inputs), **args))

    return op


def get(op_type: str) -> OpDef:
    try:
        return REGISTRY[op_type]
    except KeyError:
        raise KeyError(f"no op definition for {op_type!r} (add one in rctc/ops/)") from None


def lookup(op_type: str) -> OpDef | None:
    return REGISTRY.get(op_type)


def with_trait(*traits: str) -> frozenset[str]:
    """Op types that have every one of ``traits``."""
    return frozenset(d.op_type for d in REGISTRY.values() if all(t in d.traits for t in traits))


def where(pred: Callable[[OpDef], bool]) -> frozenset[str]:
    return frozenset(d.op_type for d in REGISTRY.values() if pred(d))


__all__ = ["OpDef", "REGISTRY", "DuplicateOpError", "define", "definer", "get", "lookup", "where", "with_trait"]

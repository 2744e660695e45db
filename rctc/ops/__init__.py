"""rctc's op definitions: one ``OpDef`` per op type, and the sets every layer derives from them.

Needs: the family modules below (importing this package defines every op exactly once).
Leaves: ``REGISTRY`` (op type -> OpDef) and the derived sets, so passes, analyses, import and
export never write an op list by hand:

* ``INT_LOWERED``: float products insert_quant lowers to their ``int_twin`` (rct);
* ``FAKE_QUANT_PRODUCTS``: forward products insert_fake_quant fake-quantises (qat);
* ``LAYOUT_OPS`` (rearrange elements), ``RESHAPE_OPS`` (keep element order), ``VIEW_OPS``
  (move no bytes), ``WIDTH_PRESERVING`` (layout ops and aliases: the output has the input's
  width);
* ``RCT_RUNNABLE`` (an integer lowering or an explicit float island), ``FLOAT_ISLANDS``;
* ``FUSABLE_PRODUCTS`` / ``FUSED_UPDATES`` / ``ACC_UPDATES`` (fuse_updates), ``UPDATE_OPS``, ``QUANTISE_OPS``,
  ``QUANT_HELPERS``, ``INT_PRODUCTS`` (integer products), ``PARAM_SLOTS`` / ``BUFFER_SLOTS``
  (import), ``UNARY_ATTRS`` (the unary activations' gradient attributes).

The kernels live with the backends (``rctc.runtime.kernels`` registers a numpy kernel per op
type); the gradient rules with the passes (``rctc.passes.grad_rules``); both refuse an op type
that has no definition here.
"""

from __future__ import annotations

from rctc.ops import (
    activations,
    elementwise,
    integer,
    integer_pointwise,
    layout,
    loss,
    normalisation,
    optimizer,
    pooling,
    products,
    quant,
    selection,
)
from rctc.ops.schema import (
    ALIAS,
    FUSABLE_WEIGHT_GRAD,
    GRADIENT,
    INTEGER,
    LAYOUT,
    PRODUCT,
    QUANT_HELPER,
    QUANTISE,
    REGISTRY,
    RESHAPE,
    UNARY_ACTIVATION,
    UPDATE,
    VIEW,
    WEIGHTED,
    DuplicateOpError,
    OpDef,
    get,
    lookup,
    where,
    with_trait,
)
from rctc.ops.table import format_table, operator_table

_FAMILY_MODULES = (products, elementwise, activations, normalisation, pooling, layout, loss, optimizer, quant, integer,
                  integer_pointwise, selection)

INT_LOWERED = where(lambda d: d.int_twin is not None)
FAKE_QUANT_PRODUCTS = where(lambda d: d.int_twin is not None and GRADIENT not in d.traits)
LAYOUT_OPS = with_trait(LAYOUT)
RESHAPE_OPS = with_trait(RESHAPE)
VIEW_OPS = with_trait(VIEW)
WIDTH_PRESERVING = LAYOUT_OPS | with_trait(ALIAS)
RCT_RUNNABLE = where(lambda d: d.rct is not None)
FLOAT_ISLANDS = where(lambda d: d.rct == "float-island")
FUSABLE_PRODUCTS = with_trait(FUSABLE_WEIGHT_GRAD)
FUSED_UPDATES = {d.op_type: d.fused_twin for d in REGISTRY.values() if d.fused_twin is not None}
#: an integer update -> its form that reads an integer gradient accumulator (fuse_updates)
ACC_UPDATES = {d.op_type: d.acc_twin for d in REGISTRY.values() if d.acc_twin is not None}
UPDATE_OPS = with_trait(UPDATE)
QUANTISE_OPS = with_trait(QUANTISE)
QUANT_HELPERS = with_trait(QUANT_HELPER) | WIDTH_PRESERVING
INT_PRODUCTS = with_trait(PRODUCT, INTEGER)
#: integer twin of a forward product -> the ONNX product (export)
FORWARD_PRODUCT_OF = {d.int_twin: d.op_type for d in REGISTRY.values() if d.op_type in FAKE_QUANT_PRODUCTS}
PRODUCT_OPERANDS = {d.op_type: d.product_operands for d in REGISTRY.values() if d.product_operands is not None}
PARAM_SLOTS = {d.op_type: d.param_slots for d in REGISTRY.values() if d.param_slots}
BUFFER_SLOTS = {d.op_type: d.buffer_slots for d in REGISTRY.values() if d.buffer_slots}
UNARY_ATTRS = {d.op_type: tuple(d.attrs) for d in REGISTRY.values() if UNARY_ACTIVATION in d.traits}
#: ops whose parameter slots always hold weights (the element-wise Add / Sub / Mul do only for
#: original initializers of more than one element)
WEIGHTED_OPS = with_trait(WEIGHTED)
#: the float (fp32 / qat) updates assign_slots turns into integer ones
FLOAT_UPDATES = where(lambda d: UPDATE in d.traits and INTEGER not in d.traits)


def domain_of(op_type: str) -> str:
    """The ONNX domain a node of ``op_type`` is emitted in ('' for standard ops, 'rctc' for ours)."""
    return get(op_type).domain


__all__ = [
    "ACC_UPDATES", "BUFFER_SLOTS", "DuplicateOpError", "FAKE_QUANT_PRODUCTS", "FLOAT_ISLANDS", "FLOAT_UPDATES",
    "FORWARD_PRODUCT_OF", "FUSABLE_PRODUCTS", "FUSED_UPDATES", "INT_LOWERED", "INT_PRODUCTS", "LAYOUT_OPS", "OpDef",
    "PARAM_SLOTS", "PRODUCT_OPERANDS", "QUANTISE_OPS", "QUANT_HELPERS", "RCT_RUNNABLE", "REGISTRY", "RESHAPE_OPS",
    "UNARY_ATTRS", "UPDATE_OPS", "VIEW_OPS", "WEIGHTED_OPS", "WIDTH_PRESERVING", "domain_of", "format_table", "get",
    "lookup", "operator_table", "with_trait",
]

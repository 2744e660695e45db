"""The op definitions and the tables attached to them agree (rctc.ops is the one source).

Every defined op has a numpy kernel and a cost; every kernel and gradient rule is for a
defined op; the gradient rules are exactly the differentiable ops; every op a gradient rule
or a lowering emits (in any bundled model, in every mode) is defined, has a kernel and a cost,
and in rct mode runs as an integer op or an explicit float island; nothing registers twice.
"""

from __future__ import annotations

import pytest

import rctc
from rctc import models, ops
from rctc.ops import schema
from rctc.passes.grad_rules import RULES, rule
from rctc.runtime.kernels import KERNELS
from rctc.runtime.kernels.registry import register


def test_every_definition_has_a_kernel_and_every_kernel_a_definition() -> None:
    assert set(KERNELS) == set(ops.REGISTRY)
    assert all(callable(d.cost) for d in ops.REGISTRY.values())


def test_gradient_rules_are_exactly_the_differentiable_ops() -> None:
    assert set(RULES) == {d.op_type for d in ops.REGISTRY.values() if d.differentiable}


def test_rct_lowering_is_stated_for_every_op_rct_mode_contains() -> None:
    for d in ops.REGISTRY.values():
        assert ("rct" in d.modes) == (d.rct in ("integer", "float-island")), d.op_type
        if d.int_twin is not None:
            twin = ops.get(d.int_twin)
            assert twin.rct == "integer" and twin.has(schema.PRODUCT), d.op_type
        if d.fused_twin is not None:
            assert ops.get(d.fused_twin).has(schema.UPDATE), d.op_type


def _arity_ok(names: tuple[str, ...], n: int) -> bool:
    """``n`` operands fit ``names`` (``"x?"`` optional, ``"*x"`` variadic)."""
    if any(s.startswith("*") for s in names):
        return n >= len([s for s in names if not s.startswith("*") and not s.endswith("?")])
    return len([s for s in names if not s.endswith("?")]) <= n <= len(names)


@pytest.mark.parametrize("mode", ["rct", "qat", "fp32"])
def test_every_emitted_op_is_defined_with_kernel_and_cost(mode: str) -> None:
    seen: set[str] = set()
    for name in models.READY:
        for opt in ("sgd", "momentum"):
            g = rctc.compile(str(models.path(name)), mode=mode, batch_size=2, optimizer=opt).graph
            for n in g.nodes:
                d = ops.get(n.op_type)
                assert mode in d.modes, f"{n.op_type} in a {mode} graph, definition says {sorted(d.modes)}"
                assert _arity_ok(d.inputs, len(n.inputs)), f"{n.name}: {len(n.inputs)} inputs, defined {d.inputs}"
                assert _arity_ok(d.outputs, len(n.outputs)), f"{n.name}: {len(n.outputs)} outputs, defined {d.outputs}"
                assert n.domain == d.domain, f"{n.name}: domain {n.domain!r}, definition {d.domain!r}"
                assert n.op_type in KERNELS
                seen.add(n.op_type)
    assert len(seen) > 20


def test_registering_twice_raises() -> None:
    with pytest.raises(schema.DuplicateOpError, match="Relu"):
        schema.define(ops.get("Relu"))
    with pytest.raises(RuntimeError, match="twice"):
        register("Relu")(lambda ctx, node, x: x)
    with pytest.raises(RuntimeError, match="twice"):
        rule("Relu")(lambda b, node, dys: [None])


def test_undefined_op_cannot_get_a_kernel_or_rule() -> None:
    with pytest.raises(RuntimeError, match="no op definition"):
        register("NoSuchOp")(lambda ctx, node, x: x)
    with pytest.raises(RuntimeError, match="no op definition"):
        rule("NoSuchOp")(lambda b, node, dys: [None])
    assert "NoSuchOp" not in KERNELS and "NoSuchOp" not in RULES


def test_definition_checks_its_own_consistency() -> None:
    with pytest.raises(ValueError, match="not inputs"):
        schema.OpDef("Bad", "elementwise", ("X",), differentiable=("W",), cost=lambda *a: None)
    with pytest.raises(ValueError, match="disagrees with modes"):
        schema.OpDef("Bad", "elementwise", ("X",), modes=frozenset({"fp32"}), cost=lambda *a: None)
    with pytest.raises(ValueError, match="unknown trait"):
        schema.OpDef("Bad", "elementwise", ("X",), traits=frozenset({"shiny"}), cost=lambda *a: None)


def test_derived_sets_are_consistent() -> None:
    assert ops.LAYOUT_OPS <= ops.VIEW_OPS and ops.RESHAPE_OPS <= ops.LAYOUT_OPS
    assert ops.FAKE_QUANT_PRODUCTS <= ops.INT_LOWERED
    assert ops.FUSABLE_PRODUCTS <= ops.INT_PRODUCTS
    assert set(ops.PRODUCT_OPERANDS) == ops.with_trait(schema.PRODUCT)
    for op, attrs in ops.UNARY_ATTRS.items():
        assert ops.get(f"{op}Grad").has(schema.GRADIENT) and set(attrs) == set(ops.get(f"{op}Grad").attrs)


def test_operator_table_lists_every_op_with_its_modes() -> None:
    rows = ops.operator_table()
    assert len(rows) == len(ops.REGISTRY) >= 60
    by = {r["op_type"]: r for r in rows}
    assert by["Conv"]["modes"] == {"fp32": True, "qat": True, "rct": "integer"}
    assert by["Relu"]["modes"]["rct"] == "integer" and by["Relu"]["rct_lowering"]["emits"] == ["IntRelu"]
    assert by["MaxPool"]["modes"]["rct"] == "integer (some attributes: float island)"
    assert by["Softplus"]["modes"]["rct"] == "float-island" and by["Reshape"]["modes"]["rct"] == "integer (layout)"
    assert by["Sigmoid"]["modes"]["rct"] == "integer" and by["Sigmoid"]["rct_lowering"]["emits"] == ["IntSigmoid"]
    assert by["FakeQuant"]["modes"] == {"fp32": False, "qat": True, "rct": None}
    assert by["Conv"]["differentiable"] == ["X", "W", "B"] and by["Pow"]["differentiable"] == ["X"]
    assert all(set(r) >= {"op_type", "modes", "differentiable", "c_kernel", "family"} for r in rows)
    text = ops.format_table(rows)
    assert text.splitlines()[0].split()[:3] == ["op", "family", "domain"]
    assert f"{len(rows)} op types" in text and all(r["op_type"] in text for r in rows)


def test_readme_ops_block_is_generated_from_the_table() -> None:
    from pathlib import Path

    from rctc.ops.table import README_BEGIN, README_END, readme_block

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    assert text[start:end] == readme_block(), "README ops list is stale: run python -m rctc.ops --readme README.md"
    for r in ops.operator_table():
        if r["domain"] == "ai.onnx" and r["differentiable"]:
            assert f" {r['op_type']}," in text[start:end] or f" {r['op_type']} |" in text[start:end]


def test_every_integer_lowering_rule_is_declared_by_its_op_definition() -> None:
    """The rct column comes from the definitions: the op types with a lowering rule are exactly those
    whose definition declares one (``rct_lowering``) plus the layout ops, and each declared op exists
    as an integer op."""
    from rctc.passes.int_lowerings import LOWERINGS

    declared = {d.op_type for d in ops.REGISTRY.values() if d.rct_lowering}
    assert set(LOWERINGS) <= declared | ops.LAYOUT_OPS
    # a declared op without a rule runs on the integers as itself by another pass (Gather of a parameter:
    # assign_slots); every op whose rule emits other ops has that rule
    without_rule = declared - set(LOWERINGS) - ops.LAYOUT_OPS
    assert all(ops.get(op).rct_lowering == (op,) for op in without_rule), without_rule
    assert {op for op in declared if ops.get(op).rct_lowering != (op,)} <= set(LOWERINGS)
    for op in declared:
        for emitted in ops.get(op).rct_lowering:
            assert emitted == op or ops.get(emitted).rct == "integer" and ops.get(emitted).has(schema.INTEGER), op

"""insert_quant (rct mode): GEMM-class products become integer ops on integer operands.

Needs: assign_slots (parameters are integers read through ``Dequantize``).
Leaves: every Conv / Gemm / MatMul (forward) and ConvGradInput / ConvGradWeight / Gemm /
MatMul (backward) replaced by its ``Int*`` twin, which multiplies integers and accumulates
exactly (int32, or int64 where the worst-case bound ``K * 2^(b1-1) * 2^(b2-1)`` needs it)
and returns the accumulator with its exponent; a ``Dequantize`` node brings the
accumulator back to float32 (adding a Conv bias / Gemm C, or the bias a forward ``Add`` adds
along a MatMul's last axis, which it replaces: ``x @ W + b``) for the float element-wise ops.
Operands: parameters are used as stored (their slot exponent); activations go through
``QuantAct`` (``--act-bits``, nearest, per-tensor exponent from the batch max in training and
from a running max in inference); errors (gradient values) go through ``QuantGrad``
(``--grad-bits``, stochastic unless ``--rounding nearest``). Layout ops between a value and
a product (Transpose, Reshape, Flatten, Squeeze, Unsqueeze) run on the integers, and each
value is quantised once, so a weight-gradient product reuses the forward's quantised input.
"""

from __future__ import annotations

import numpy as np

from rctc.errors import UnsupportedOpError
from rctc.fixedpoint import int_dtype_for_bits
from rctc.ir import EXPONENT, GRAD, INT_VIEW, Graph, Node, Role, Value
from rctc.ops import INT_LOWERED, LAYOUT_OPS, RCT_RUNNABLE, get
from rctc.ops.costs import contraction
from rctc.options import CompileOptions

#: float products with an integer twin, and the layout ops that run on the integers feeding one
GEMM_OPS = INT_LOWERED


class _Quantiser:
    def __init__(self, g: Graph, options: CompileOptions) -> None:
        self.g = g
        self.o = options
        self.memo: dict[str, tuple[Value, Value, int]] = {}

    def operand(self, v: Value, user: Node) -> tuple[Value, Value, int]:
        """(integer value, exponent value, max bits) for a float operand ``v``."""
        if v.name in self.memo:
            return self.memo[v.name]
        prod = v.producer
        if prod is not None and prod.op_type == "Dequantize" and prod.inputs[0].kind == "param":
            p = prod.inputs[0]
            res = (p, prod.inputs[1], int(p.meta["slot"]["max_bits"]))
        elif prod is not None and prod.op_type in LAYOUT_OPS and prod.inputs[0].kind != "param":
            q, e, b = self.operand(prod.inputs[0], prod)
            node = self.g.add_node(
                prod.op_type,
                [q] + list(prod.inputs[1:]),
                [(f"{v.name}.q", v.shape, q.dtype)],
                dict(prod.attrs),
                name=f"{prod.name}.int",
                before=user,
            )
            node.meta.update(prod.meta)
            res = (node.outputs[0], e, b)
        else:
            res = self._quantise(v, user)
        self.memo[v.name] = res
        return res

    def _quantise(self, v: Value, user: Node) -> tuple[Value, Value, int]:
        g, o = self.g, self.o
        is_error = v.has_role(GRAD) or (v.producer is not None and v.producer.phase == "backward")
        after = v.producer
        kw = {"after": after} if after is not None else {"before": g.nodes[0]}
        if is_error:
            node = g.add_node(
                "QuantGrad",
                [v],
                [(f"{v.name}.q", v.shape, int_dtype_for_bits(o.grad_bits)), (f"{v.name}.e", (), np.int32)],
                {"bits": o.grad_bits, "rounding": o.rounding},
                name=f"{v.name}/quant",
                domain="rctc",
                **kw,
            )
            node.meta.update({"phase": "backward", "fwd": user.meta.get("fwd", user.name)})
            node.outputs[0].role, node.outputs[1].role = Role(INT_VIEW, v.name), Role(EXPONENT, v.name)
            return node.outputs[0], node.outputs[1], o.grad_bits
        amax = g.add_value(f"{v.name}.amax", (), np.float32, "buffer", np.zeros((), np.float32))
        node = g.add_node(
            "QuantAct",
            [v, amax],
            [
                (f"{v.name}.q", v.shape, int_dtype_for_bits(o.act_bits)),
                (f"{v.name}.e", (), np.int32),
                (f"{amax.name}.new", (), np.float32),
            ],
            {"bits": o.act_bits, "momentum": 0.9},
            name=f"{v.name}/quant",
            domain="rctc",
            **kw,
        )
        node.meta.update({"phase": "forward"})
        node.outputs[0].role, node.outputs[1].role = Role(INT_VIEW, v.name), Role(EXPONENT, v.name)
        g.state_updates[amax.name] = node.outputs[2].name
        return node.outputs[0], node.outputs[1], o.act_bits


def _contraction(node: Node) -> int:
    """K, the length of the summed axis, for the accumulator bound."""
    a, b = node.inputs[0], node.inputs[1]
    return int(contraction(node.op_type, node.attrs, tuple(a.shape), tuple(b.shape)))


def _lower(g: Graph, node: Node, qz: _Quantiser) -> None:
    out = node.outputs[0]
    qa, ea, ba = qz.operand(node.inputs[0], node)
    qb, eb, bb = qz.operand(node.inputs[1], node)
    bound = _contraction(node) * (2 ** (ba - 1)) * (2 ** (bb - 1))
    acc_dtype = np.int32 if bound < 2**31 else np.int64
    attrs = {k: v for k, v in node.attrs.items() if k not in ("alpha", "beta")}
    phase = node.phase
    inode = g.add_node(
        str(get(node.op_type).int_twin),
        [qa, ea, qb, eb],
        [(f"{out.name}.acc", out.shape, acc_dtype), (f"{out.name}.acc_e", (), np.int32)],
        attrs,
        name=f"{node.name}.int",
        domain="rctc",
        before=node,
    )
    inode.meta.update(node.meta)
    inode.meta["bits"] = [ba, bb]
    inode.meta["lowered_from"] = node.name
    bias = node.input(2) if len(get(node.op_type).inputs) > 2 else None  # Conv's B, Gemm's C
    bias_add = _bias_add(g, node) if bias is None else None
    if bias_add is not None:  # a Linear on (..., K) inputs: MatMul, then Add of its bias
        bias = bias_add[1]
    dq_attrs = {
        "alpha": float(node.attrs.get("alpha", 1.0)),
        "beta": float(node.attrs.get("beta", 1.0)),
        "bias_axis": 1 if node.op_type == "Conv" else -1,
    }
    dq = g.add_node(
        "Dequantize",
        [inode.outputs[0], inode.outputs[1]] + ([bias] if bias is not None else []),
        [(f"{out.name}.f", out.shape, out.dtype)],
        dq_attrs,
        name=f"{node.name}.dequantize",
        domain="rctc",
        before=node,
    )
    dq.meta.update({"phase": phase, "fwd": node.meta.get("fwd", node.name)})
    if bias_add is not None:  # the Add's result is the product plus bias: the Dequantize's
        add = bias_add[0]
        g.replace_value(add.outputs[0], dq.outputs[0], take_name=True)
        g.remove_node(add)
    g.replace_value(out, dq.outputs[0], take_name=bias_add is None)
    g.remove_node(node)


def _bias_add(g: Graph, node: Node) -> tuple[Node, Value] | None:
    """``(add, bias)`` when a forward MatMul's only reader is an ``Add`` of a 1-D parameter along
    its last axis (``x @ W + b``, a Linear on inputs of more than two axes): the bias then joins
    the product's Dequantize as a Gemm's C does, so requantise adds it at the accumulator's
    exponent before the one rounding (instead of rounding the product, then the sum). The
    Add's backward nodes read only its error, so they stay as they are."""
    out = node.outputs[0]
    if node.op_type != "MatMul" or node.phase != "forward" or len(out.uses) != 1:
        return None
    if out in g.outputs or out.name == g.meta.get("logits"):
        return None
    add = out.uses[0][0]
    if add.op_type != "Add" or add.phase != "forward" or len(add.inputs) != 2:
        return None
    bias = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
    src = bias.producer
    if bias is out or src is None or src.op_type != "Dequantize" or src.inputs[0].kind != "param":
        return None
    if not out.shape or tuple(bias.shape) != (out.shape[-1],) or tuple(add.outputs[0].shape) != tuple(out.shape):
        return None
    return add, bias


def _check_lowerable(g: Graph) -> None:
    """Every forward op on a gradient path needs an integer lowering or an explicit float island
    (its definition's ``rct``)."""
    fwd_with_grad = {n.meta.get("fwd") for n in g.nodes if n.phase == "backward"}
    bad = [
        f"{n.op_type} ({n.name})"
        for n in g.nodes
        if n.phase == "forward"
        and n.name in fwd_with_grad
        and n.op_type not in RCT_RUNNABLE
    ]
    if bad:
        raise UnsupportedOpError(
            f"rct mode has no integer lowering for op(s) on a gradient path: {', '.join(bad)}; "
            "freeze the layers before them (--freeze) or use --mode qat / fp32"
        )


def run(g: Graph, options: CompileOptions) -> None:
    _check_lowerable(g)
    qz = _Quantiser(g, options)
    for node in list(g.nodes):
        if node.op_type in GEMM_OPS:
            _lower(g, node, qz)
    g.remove_unused()
    g.toposort()
    g.meta["rct"] = {"act_bits": options.act_bits, "grad_bits": options.grad_bits, "rounding": options.rounding}


__all__ = ["GEMM_OPS", "run"]

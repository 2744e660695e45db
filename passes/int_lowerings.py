"""The integer lowering of each float op the requantise pass can replace (one rule per op type).

Needs: a lowerer (``rctc.passes.requantise``) that gives the integer form ``(q, e)`` of a float
value (``int_of``), the width and rounding of a node's phase (``bits`` / ``rounding``: act_bits
and nearest forward, grad_bits and ``--rounding`` backward) and builds the integer node
(``emit``).
Leaves: ``LOWERINGS`` (with the rules of ``int_lowerings_cell``, which the requantise pass
imports too), op type -> ``fn(lz, node) -> [(q, e) per float output]`` or ``None`` when
the node's attributes fall outside what the integer kernel implements (it then stays a float
island). Each op's definition states the integer ops its rule emits (``rct_lowering``) and when it
refuses (``rct_float_when``); ``rctc ops`` prints them and the lowerer emits nothing else.
A rule checks everything before it asks for an integer form, so a refused node leaves the
graph untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rctc.fixedpoint import choose_exponent, int_dtype_for_bits
from rctc.ir import Node, Value
from rctc.ops import LAYOUT, LAYOUT_OPS, UPDATE_OPS, get

IntPair = tuple[Value, Value]
Lowering = Callable[[Any, Node], "list[IntPair] | None"]

LOWERINGS: dict[str, Lowering] = {}


def lowering(*op_types: str) -> Callable[[Lowering], Lowering]:
    """Register ``fn`` as the rule of ``op_types``; each op's definition must declare what the rule
    emits (``OpDef.rct_lowering``; a layout op runs itself on the integers), so ``rctc ops`` states it."""
    def deco(fn: Lowering) -> Lowering:
        for op in op_types:
            if op in LOWERINGS:
                raise RuntimeError(f"integer lowering for {op!r} defined twice")
            d = get(op)
            if not (d.rct_lowering or d.has(LAYOUT)):
                raise RuntimeError(f"integer lowering for {op!r}: its definition declares no rct_lowering")
            LOWERINGS[op] = fn
        return fn

    return deco


def pairs_of(node: Node) -> list[IntPair]:
    return [(node.outputs[i], node.outputs[i + 1]) for i in range(0, len(node.outputs), 2)]


def is_float(v: Value | None) -> bool:
    return v is not None and np.dtype(v.dtype) == np.float32


EXP = (".e", np.int32)


# ----------------------------------------------------------------------------- exact ops
@lowering("Relu")
def _relu(lz: Any, n: Node) -> list[IntPair] | None:
    if not is_float(n.inputs[0]):
        return None
    q, e = lz.int_of(n.inputs[0], n)
    return pairs_of(lz.emit(n, "IntRelu", [q, e], [(".q", q.dtype), EXP]))


@lowering("ReluGrad")
def _relu_grad(lz: Any, n: Node) -> list[IntPair] | None:
    if not (is_float(n.inputs[0]) and is_float(n.inputs[1])):
        return None
    dq, de = lz.int_of(n.inputs[0], n)
    q, e = lz.int_of(n.inputs[1], n)
    return pairs_of(lz.emit(n, "IntReluGrad", [dq, de, q, e], [(".q", dq.dtype), EXP]))


def _pool_ok(n: Node, x: Value | None) -> bool:
    a = n.attrs
    k = a.get("kernel_shape")
    return (is_float(x) and x is not None and len(x.shape) == 4 and k is not None and len(k) == 2
            and all(int(d) == 1 for d in (a.get("dilations") or (1, 1)))
            and int(a.get("ceil_mode", 0)) == 0 and str(a.get("auto_pad", "NOTSET")) in ("NOTSET", "VALID")
            and int(a.get("storage_order", 0)) == 0 and len(n.outputs) == 1)


def _pool_attrs(n: Node) -> dict[str, Any]:
    return {k: n.attrs.get(k) for k in ("auto_pad", "ceil_mode", "kernel_shape", "pads", "strides")}


@lowering("MaxPool")
def _max_pool(lz: Any, n: Node) -> list[IntPair] | None:
    if not _pool_ok(n, n.inputs[0]):
        return None
    q, e = lz.int_of(n.inputs[0], n)
    return pairs_of(lz.emit(n, "IntMaxPool", [q, e], [(".q", q.dtype), EXP], _pool_attrs(n)))


@lowering("MaxPoolGrad")
def _max_pool_grad(lz: Any, n: Node) -> list[IntPair] | None:
    if not (is_float(n.inputs[0]) and _pool_ok(n, n.inputs[1])):
        return None
    dq, de = lz.int_of(n.inputs[0], n)
    q, e = lz.int_of(n.inputs[1], n)
    bits = lz.bits(n)
    attrs = {**_pool_attrs(n), "bits": bits, "rounding": lz.rounding(n)}
    return pairs_of(lz.emit(n, "IntMaxPoolGrad", [dq, de, q, e], [(".q", int_dtype_for_bits(bits)), EXP], attrs))


@lowering(*sorted(LAYOUT_OPS))
def layout_lowering(lz: Any, n: Node) -> list[IntPair] | None:
    """A layout op on the integers (the exponent passes through), when its input has an integer
    form already (a layout op is never worth a quantise of its own)."""
    x = n.inputs[0]
    if not is_float(x) or len(n.outputs) != 1 or not lz.has_int(x) or _feeds_updates_only(n.outputs[0]):
        return None  # a weight gradient on its way to an update stays the product fuse_updates fuses
    q, e = lz.int_of(x, n)
    out = n.outputs[0]
    node = lz.g.add_node(n.op_type, [q, *n.inputs[1:]], [(f"{out.name}.q", out.shape, q.dtype)], dict(n.attrs),
                         name=f"{n.name}.int", domain=n.domain, before=n)
    node.meta.update(n.meta)
    node.meta.setdefault("fwd", n.name)
    return [(node.outputs[0], e)]


def _const_bound(v: Value | None) -> tuple[bool, float | None]:
    """(usable, bound) of Clip's optional min / max input: absent, or a one-element constant."""
    if v is None:
        return True, None
    if v.kind != "const" or v.data is None or np.asarray(v.data).size != 1:
        return False, None
    return True, float(np.asarray(v.data).reshape(-1)[0])


def _clip_attrs(n: Node, first: int) -> dict[str, Any] | None:
    ok_lo, lo = _const_bound(n.input(first))
    ok_hi, hi = _const_bound(n.input(first + 1))
    if not (ok_lo and ok_hi):
        return None
    return {"min": lo, "max": hi}


@lowering("Clip")
def _clip(lz: Any, n: Node) -> list[IntPair] | None:
    attrs = _clip_attrs(n, 1)
    if attrs is None or not is_float(n.inputs[0]):
        return None
    q, e = lz.int_of(n.inputs[0], n)
    return pairs_of(lz.emit(n, "IntClip", [q, e], [(".q", q.dtype), EXP], attrs))


@lowering("ClipGrad")
def _clip_grad(lz: Any, n: Node) -> list[IntPair] | None:
    attrs = _clip_attrs(n, 2)
    if attrs is None or not (is_float(n.inputs[0]) and is_float(n.inputs[1])):
        return None
    dq, de = lz.int_of(n.inputs[0], n)
    q, e = lz.int_of(n.inputs[1], n)
    return pairs_of(lz.emit(n, "IntClipGrad", [dq, de, q, e], [(".q", dq.dtype), EXP], attrs))


# ----------------------------------------------------------------------------- normalisation
STATE_BITS = 16


def _int_state(lz: Any, v: Value) -> tuple[Value, Value]:
    """A float running statistic as 16-bit integer state ``(q, e)`` (compile time: the initial
    value, quantised to nearest with its exponent from the max)."""
    data = np.asarray(v.data, np.float64)
    m = float(np.max(np.abs(data))) if data.size else 0.0
    e = choose_exponent(m, STATE_BITS)
    q = np.clip(np.rint(np.ldexp(data, -e)), -(2 ** (STATE_BITS - 1) - 1), 2 ** (STATE_BITS - 1) - 1)
    g = lz.g
    qv = g.add_value(f"{v.name}.q", v.shape, np.int16, "buffer", q.astype(np.int16))
    ev = g.add_value(f"{v.name}.qexp", (), np.int32, "buffer", np.array(e, np.int32))
    return qv, ev


@lowering("BatchNormalization")
def _batch_norm(lz: Any, n: Node) -> list[IntPair] | None:
    """Training-mode BatchNorm (batch statistics; running statistics as integer state, which
    replaces the float buffers)."""
    x, scale, bias, mean, var = (n.input(i) for i in range(5))
    if not (len(n.outputs) == 3 and is_float(x) and x is not None and len(x.shape) >= 2 and is_float(scale)
            and is_float(bias) and all(v is not None and v.kind == "buffer" and v.data is not None for v in (mean, var))
            and all(n.outputs[k].name == lz.g.state_updates.get(s.name) for k, s in ((1, mean), (2, var)))):
        return None
    q, e = lz.int_of(x, n)
    gq, ge = lz.int_of(scale, n)
    bq, be = lz.int_of(bias, n)
    (mq, me), (vq, ve) = _int_state(lz, mean), _int_state(lz, var)
    bits = lz.bits(n)
    node = lz.emit(n, "IntBatchNormalization", [q, e, gq, ge, bq, be, mq, me, vq, ve],
                   [(".q", int_dtype_for_bits(bits)), EXP, (".q", np.int16), EXP, (".q", np.int16), EXP],
                   {"epsilon": float(n.attrs.get("epsilon", 1e-5)), "momentum": float(n.attrs.get("momentum", 0.9)),
                    "bits": bits})
    g = lz.g
    for old, (nq, ne), (sq, se) in ((mean, (2, 3), (mq, me)), (var, (4, 5), (vq, ve))):
        g.state_updates.pop(old.name)
        g.state_updates[sq.name] = node.outputs[nq].name
        g.state_updates[se.name] = node.outputs[ne].name
        lz.orphans.add(old.name)
    return pairs_of(node)


def norm_grad_lowering(lz: Any, n: Node, fwd_op: str, int_op: str, attrs: Callable[[Node], dict[str, Any]]
               ) -> list[IntPair] | None:
    """BatchNormGrad / LayerNormGrad -> their integer twin, when the forward norm was lowered and the
    scale / bias gradients only feed updates: (dx at the error width, dgamma / dbeta as exact int64)."""
    dy, x, scale = n.input(0), n.input(1), n.input(2)
    fwd = [u for u, _ in x.uses if u.op_type == fwd_op] if x is not None else []
    if not (is_float(dy) and is_float(x) and is_float(scale) and len(n.outputs) == 3 and fwd
            and all(f.name in lz.lowered for f in fwd)
            and all(not o.uses or _feeds_updates_only(o) for o in n.outputs[1:])):
        return None
    dq, de = lz.int_of(dy, n)
    q, e = lz.int_of(x, n)
    gq, ge = lz.int_of(scale, n)
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, int_op, [dq, de, q, e, gq, ge],
                            [(".q", int_dtype_for_bits(bits)), EXP, (".acc", np.int64), EXP, (".acc", np.int64), EXP],
                            {**attrs(fwd[0]), "bits": bits, "rounding": lz.rounding(n)}))


@lowering("BatchNormGrad")
def _batch_norm_grad(lz: Any, n: Node) -> list[IntPair] | None:
    return norm_grad_lowering(lz, n, "BatchNormalization", "IntBatchNormGrad",
                      lambda f: {"epsilon": float(n.attrs.get("epsilon", 1e-5))})


@lowering("LayerNormalization")
def _layer_norm(lz: Any, n: Node) -> list[IntPair] | None:
    x, scale, bias = n.input(0), n.input(1), n.input(2)
    if not (is_float(x) and is_float(scale) and is_float(bias) and all(not o.uses for o in n.outputs[1:])
            and all(o not in lz.g.outputs for o in n.outputs)):
        return None
    q, e = lz.int_of(x, n)
    gq, ge = lz.int_of(scale, n)
    bq, be = lz.int_of(bias, n)
    bits = lz.bits(n)
    node = lz.emit(n, "IntLayerNormalization", [q, e, gq, ge, bq, be], [(".q", int_dtype_for_bits(bits)), EXP],
                   {"axis": int(n.attrs.get("axis", -1)), "epsilon": float(n.attrs.get("epsilon", 1e-5)), "bits": bits})
    return pairs_of(node)


@lowering("LayerNormGrad")
def _layer_norm_grad(lz: Any, n: Node) -> list[IntPair] | None:
    return norm_grad_lowering(lz, n, "LayerNormalization", "IntLayerNormGrad",
                      lambda f: {"axis": int(f.attrs.get("axis", -1)), "epsilon": float(f.attrs.get("epsilon", 1e-5))})


@lowering("Softmax")
def _softmax(lz: Any, n: Node) -> list[IntPair] | None:
    if not is_float(n.inputs[0]):
        return None
    q, e = lz.int_of(n.inputs[0], n)
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, "IntSoftmax", [q, e], [(".q", int_dtype_for_bits(bits)), EXP],
                            {"axis": int(n.attrs.get("axis", -1)), "bits": bits}))


@lowering("SoftmaxGrad")
def _softmax_grad(lz: Any, n: Node) -> list[IntPair] | None:
    dy, y = n.inputs[0], n.inputs[1]
    fwd = y.producer if y is not None else None
    if not (is_float(dy) and is_float(y) and fwd is not None and fwd.name in lz.lowered):
        return None
    dq, de = lz.int_of(dy, n)
    qy, ey = lz.int_of(y, n)
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, "IntSoftmaxGrad", [dq, de, qy, ey], [(".q", int_dtype_for_bits(bits)), EXP],
                            {"axis": int(fwd.attrs.get("axis", -1)), "bits": bits, "rounding": lz.rounding(n)}))


def _const_ints(v: Value | None) -> list[int] | None:
    if v is None or v.kind != "const" or v.data is None:
        return None
    return [int(a) for a in np.asarray(v.data).reshape(-1)]


@lowering("ReduceMean")
def _reduce_mean(lz: Any, n: Node) -> list[IntPair] | None:
    x = n.inputs[0]
    axes = _const_ints(n.input(1)) if n.input(1) is not None else n.attrs.get("axes")
    if not (is_float(x) and axes):
        return None
    q, e = lz.int_of(x, n)
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, "IntReduceMean", [q, e], [(".q", int_dtype_for_bits(bits)), EXP],
                            {"axes": [int(a) for a in axes], "keepdims": int(n.attrs.get("keepdims", 1)),
                             "bits": bits}))


@lowering("ReduceMeanGrad")
def _reduce_mean_grad(lz: Any, n: Node) -> list[IntPair] | None:
    if not (is_float(n.inputs[0]) and n.attrs.get("axes") and n.attrs.get("shape")):
        return None
    dq, de = lz.int_of(n.inputs[0], n)
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, "IntReduceMeanGrad", [dq, de], [(".q", int_dtype_for_bits(bits)), EXP],
                            {"shape": list(n.attrs["shape"]), "axes": list(n.attrs["axes"]),
                           "keepdims": int(n.attrs.get("keepdims", 1)), "bits": bits, "rounding": lz.rounding(n)}))


@lowering("GatherGrad")
def _gather_grad(lz: Any, n: Node) -> list[IntPair] | None:
    """An embedding's gradient (axis 0, only updates read it) as an exact int64 accumulator; any
    other Gather's error (an unrolled cell's row slices) scattered exactly, rounded once to the
    error width (exact for distinct indices)."""
    dy, out = n.inputs[0], n.outputs[0]
    if not is_float(dy):
        return None
    dq, de = lz.int_of(dy, n)
    if int(n.attrs.get("axis", 0)) == 0 and _feeds_updates_only(out):
        return pairs_of(lz.emit(n, "IntGatherGrad", [dq, de, n.inputs[1]], [(".acc", np.int64), EXP],
                                {"table_shape": list(n.attrs["table_shape"])}))
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, "IntGatherScatter", [dq, de, n.inputs[1]], [(".q", int_dtype_for_bits(bits)), EXP],
                            {"table_shape": list(n.attrs["table_shape"]), "axis": int(n.attrs.get("axis", 0)),
                           "bits": bits, "rounding": lz.rounding(n)}))


def binary_lowering(int_op: str) -> Callable[[Any, Node], list[IntPair] | None]:
    """Add / Mul -> their integer twin: both operands quantised, one rounding to the node's width."""
    def lower(lz: Any, n: Node) -> list[IntPair] | None:
        a, b = n.inputs[0], n.inputs[1]
        if not (is_float(a) and is_float(b)):
            return None
        qa, ea = lz.int_of(a, n)
        qb, eb = lz.int_of(b, n)
        bits = lz.bits(n)
        return pairs_of(lz.emit(n, int_op, [qa, ea, qb, eb], [(".q", int_dtype_for_bits(bits)), EXP],
                                {"bits": bits, "rounding": lz.rounding(n)}))
    return lower


# ----------------------------------------------------------------------------- arithmetic
lowering("Mul")(binary_lowering("IntMul"))
lowering("Add")(binary_lowering("IntAdd"))


def _feeds_updates_only(v: Value) -> bool:
    return bool(v.uses) and all(u.op_type in UPDATE_OPS for u, _ in v.uses)


@lowering("ConvGradBias", "ReduceSumTo")
def _bias_grad(lz: Any, n: Node) -> list[IntPair] | None:
    """A bias gradient (an error summed over the batch / broadcast axes) as an exact int64 sum,
    when only updates read it (the update takes it at the error's exponent); a ReduceSumTo that
    other ops read (the error of a broadcast operand inside an unrolled cell) as IntAddGrad: the
    same exact sum, rounded once to the error width."""
    dy, out = n.inputs[0], n.outputs[0]
    if not is_float(dy):
        return None
    to_update = _feeds_updates_only(out)
    if not (to_update or n.op_type == "ReduceSumTo"):
        return None
    x_shape, shape = tuple(dy.shape), tuple(out.shape)
    if n.op_type == "ConvGradBias":
        axes = [a for a in range(len(x_shape)) if a != 1]
    else:
        lead = len(x_shape) - len(shape)
        if lead < 0:
            return None
        axes = list(range(lead)) + [i + lead for i, d in enumerate(shape) if d == 1 and x_shape[i + lead] != 1]
        if any(d not in (1, x_shape[i + lead]) for i, d in enumerate(shape)):
            return None
    dq, de = lz.int_of(dy, n)
    if not to_update:
        bits = lz.bits(n)
        return pairs_of(lz.emit(n, "IntAddGrad", [dq, de], [(".q", int_dtype_for_bits(bits)), EXP],
                                {"shape": [int(d) for d in shape], "bits": bits, "rounding": lz.rounding(n)}))
    return pairs_of(lz.emit(n, "IntReduceSum", [dq, de], [(".acc", np.int64), EXP],
                            {"axes": axes, "shape": list(shape)}))


# ----------------------------------------------------------------------------- pools
@lowering("GlobalAveragePool")
def _gap(lz: Any, n: Node) -> list[IntPair] | None:
    x = n.inputs[0]
    if not (is_float(x) and len(x.shape) >= 3):
        return None
    q, e = lz.int_of(x, n)
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, "IntGlobalAveragePool", [q, e], [(".q", int_dtype_for_bits(bits)), EXP], {"bits": bits}))


@lowering("GlobalAveragePoolGrad")
def _gap_grad(lz: Any, n: Node) -> list[IntPair] | None:
    if not is_float(n.inputs[0]):
        return None
    dq, de = lz.int_of(n.inputs[0], n)
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, "IntGlobalAveragePoolGrad", [dq, de], [(".q", int_dtype_for_bits(bits)), EXP],
                            {"input_shape": list(n.attrs["input_shape"]), "bits": bits, "rounding": lz.rounding(n)}))


# ----------------------------------------------------------------------------- loss
def _unit_seed(v: Value | None) -> bool:
    return v is not None and v.kind == "const" and v.data is not None and np.asarray(v.data).size == 1 \
        and float(np.asarray(v.data).reshape(-1)[0]) == 1.0


@lowering("SoftmaxCrossEntropy")
def _ce(lz: Any, n: Node) -> list[IntPair] | None:
    logits = n.inputs[0]
    if not (is_float(logits) and len(logits.shape) == 2):
        return None
    q, e = lz.int_of(logits, n)
    return pairs_of(lz.emit(n, "IntSoftmaxCrossEntropy", [q, e, n.inputs[1], n.inputs[2]], [(".q", np.int64), EXP]))


@lowering("SoftmaxCrossEntropyGrad")
def _ce_grad(lz: Any, n: Node) -> list[IntPair] | None:
    """``(softmax - onehot) / B`` for the loss's own seed of 1 (a scaled seed stays float)."""
    logits = n.inputs[1]
    if not (_unit_seed(n.inputs[0]) and is_float(logits) and len(logits.shape) == 2):
        return None
    q, e = lz.int_of(logits, n)
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, "IntSoftmaxCrossEntropyGrad", [q, e, n.inputs[2], n.inputs[3]],
                            [(".q", int_dtype_for_bits(bits)), EXP], {"bits": bits, "rounding": lz.rounding(n)}))


__all__ = ["LOWERINGS", "IntPair", "lowering"]

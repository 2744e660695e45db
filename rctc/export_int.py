"""The export of an integer-lowered rct graph's forward ops (``--elementwise integer``).

Needs: ``rctc.export._Exporter`` (its ``value`` gives the ONNX tensor holding a value's
dequantised float form, ``qb`` the quantisation building blocks, ``rep`` the IR -> ONNX map).
Leaves: ``emit_integer(ex, node)``, which writes the ONNX form of one forward integer op
(``rctc.ops.integer``) and maps its integer output ``q`` to a float tensor holding ``q * 2^e``;
exponent outputs get no tensor (nothing exported reads them: every consumer reads the float
form of ``q``).

Each integer op becomes its float ONNX op on the dequantised operands, followed, where rctc
rounds, by :func:`requant`: the output's exponent from the batch's max |x| and rctc's nearest
(half up) rounding, ``q = floor(x / 2^e + 1/2)``, exactly as ``rctc.runtime.intref.core.requantize``
chooses and rounds. In the ``qdq`` format that rounding is written as ``QuantizeLinear ->
DequantizeLinear`` (int8 / int16) of the already rounded value, so the integers are explicit.
Exact ops (``IntRelu``, ``IntMaxPool``, ``IntClip``) need no rounding. BatchNorm's 16-bit
running state is dequantised into the ONNX BatchNormalization inputs (float initializers, or
int16 + DequantizeLinear in qdq).

A Conv / Gemm bias is brought to the accumulator's exponent as rctc does it (nearest, half up:
``floor(b / 2^e_acc + 1/2) 2^e_acc``, exact when the bias grid is coarser) before it is added:
the accumulator's scale ``2^e_acc`` is tracked through the graph (``ex.scales``: each exponent
value's ``2^e`` tensor, from the input quantiser, every rounding, and the products).

What is not exact: rctc's integer algorithms (fixed-point reciprocals and rsqrt, i-exp) differ
from the float ops by their stated error bounds, so a value near a rounding tie can round the
other way; tests/test_export.py states and checks the tolerance and the argmax agreement.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from onnx import helper

from rctc.errors import RctcError
from rctc.fixedpoint import int_dtype_for_bits, qmax_for_bits
from rctc.ir import Node, Value

if TYPE_CHECKING:
    from rctc.export import _Exporter

#: integer ops whose result rctc rounds (output through ``requant``) -> float ONNX op
_ROUNDED = {"IntAdd": "Add", "IntMul": "Mul", "IntGlobalAveragePool": "GlobalAveragePool",
            "IntReduceMean": "ReduceMean", "IntSoftmax": "Softmax",
            "IntLayerNormalization": "LayerNormalization", "IntBatchNormalization": "BatchNormalization",
            "IntSub": "Sub", "IntSigmoid": "Sigmoid", "IntTanh": "Tanh", "IntConcat": "Concat",
            "IntInstanceNormalization": "InstanceNormalization", "IntLeakyRelu": "LeakyRelu",
            "IntHardSigmoid": "HardSigmoid", "IntHardSwish": "HardSwish", "IntErf": "Erf", "IntExp": "Exp"}
#: integer ops that are exact on the integers
_EXACT = {"IntRelu": "Relu", "IntMaxPool": "MaxPool", "IntClip": "Clip", "IntNeg": "Neg"}
INTEGER_FORWARD_OPS = frozenset({"Requantize", *_ROUNDED, *_EXACT})
_POOL_ATTRS = ("auto_pad", "ceil_mode", "kernel_shape", "pads", "strides", "dilations")


def requant(ex: _Exporter, x: str, out: str, bits: int, exp: Value | None = None) -> str:
    """``x`` rounded as rctc's requantize rounds it: ``e`` the smallest with
    ``floor(max|x| / 2^e + 1/2) <= qmax``, ``q = floor(x / 2^e + 1/2)``; tensor ``out`` = ``q 2^e``
    (its scale ``2^e`` recorded for exponent value ``exp``)."""
    qb = ex.qb
    qm = qb.const(f"{out}.qmax_r", np.float32(qmax_for_bits(bits)))
    half = qb.const(f"{out}.half", np.float32(0.5))
    two = qb.const(f"{out}.two_r", np.float32(2.0))
    s0 = qb.dyn_scale(x, bits, out)  # the smallest 2^e with max|x| <= qmax 2^e
    m = qb.node("ReduceMax", [qb.node("Abs", [x], f"{out}.abs_r")], f"{out}.absmax_r", keepdims=0)

    def rounded_max(scale: str, tag: str) -> str:
        return qb.node("Floor", [qb.node("Add", [qb.node("Div", [m, scale], f"{out}.top_scaled{tag}"), half],
                                         f"{out}.top_half{tag}")], f"{out}.top{tag}")

    # rctc's exponent is the smallest whose *rounded* max fits: one finer than s0 when max|x| lies in
    # (qmax, qmax + 1/2) there, one coarser when the rounding at s0 overflows
    s_lo = qb.node("Div", [s0, two], f"{out}.scale_half")
    fits_lo = qb.node("LessOrEqual", [rounded_max(s_lo, "_lo"), qm], f"{out}.fits_finer")
    over = qb.node("Greater", [rounded_max(s0, ""), qm], f"{out}.rounds_over")
    s_hi = qb.node("Where", [over, qb.node("Mul", [s0, two], f"{out}.scale_x2"), s0], f"{out}.scale_hi")
    s = qb.node("Where", [fits_lo, s_lo, s_hi], f"{out}.scale_r")
    if exp is not None:
        ex.scales[exp.name] = s
    q = qb.node("Floor", [qb.node("Add", [qb.node("Div", [x, s], f"{out}.scaled_r"), half], f"{out}.plus_half")],
                f"{out}.q_f")
    dtype = qb.act_dtype(bits)
    if dtype is None:
        return qb._named("Mul", [q, s], out)
    y = qb.node("Mul", [q, s], f"{out}.rounded")  # q 2^e exactly: QuantizeLinear below does not round
    qi = qb.node("QuantizeLinear", [y, s], f"{out}.int", output_dtype=helper.np_dtype_to_tensor_dtype(dtype))
    return qb._named("DequantizeLinear", [qi, s], out)


def _float_of(ex: _Exporter, q: Value, e: Value) -> str:
    """The ONNX tensor holding ``q * 2^e``: a produced value's float form, or a stored integer
    (a constant quantised at compile time, BatchNorm's running state) as a float initializer
    (float) or integers + DequantizeLinear (qdq)."""
    if q.name in ex.rep or not (q.kind in ("const", "buffer") and e.data is not None
                                and np.issubdtype(np.dtype(q.dtype), np.integer)):
        return ex.value(q)
    data = np.asarray(q.data)
    exp = int(np.asarray(e.data))
    base = q.name[:-2] if q.name.endswith(".q") else f"{q.name}.float"  # the float value's own name if free
    if ex.fmt == "float":
        name = ex.qb.const(base, (data.astype(np.float64) * math.ldexp(1.0, exp)).astype(np.float32))
    else:
        bits = 16 if data.dtype.itemsize > 1 else 8
        qname = ex.qb.const(f"{q.name}.int", data.astype(int_dtype_for_bits(bits)))
        sname = ex.qb.const(f"{q.name}.scale", np.float32(math.ldexp(1.0, exp)))
        name = ex.qb.node("DequantizeLinear", [qname, sname], base)
    ex.rep[q.name] = name
    return name


def product_scale(ex: _Exporter, n: Node) -> None:
    """The scale of an integer product's accumulator, ``2^(e_a + e_b)``, when both are known
    (an operand's exponent value in ``ex.scales``, or a stored exponent)."""
    parts = []
    for e in (n.inputs[1], n.inputs[3]):
        if e.name in ex.scales:
            parts.append(ex.scales[e.name])
        elif e.data is not None and e.kind in ("param", "buffer", "const"):
            parts.append(ex.qb.const(f"{e.name}.pow2", np.float32(math.ldexp(1.0, int(np.asarray(e.data))))))
        else:
            return
    ex.scales[n.outputs[1].name] = ex.qb.node("Mul", parts, f"{n.outputs[1].name}.pow2")


def _on_grid(ex: _Exporter, b: str, scale: str, base: str) -> str:
    """``b`` rounded to the grid ``scale`` as rctc's bias shift rounds: ``floor(b / s + 1/2) s``."""
    half = ex.qb.const(f"{base}.half_b", np.float32(0.5))
    t = ex.qb.node("Floor", [ex.qb.node("Add", [ex.qb.node("Div", [b, scale], f"{base}.bias_scaled"), half],
                                        f"{base}.bias_half")], f"{base}.bias_q")
    return ex.qb.node("Mul", [t, scale], f"{base}.bias_aligned")


def _requantize(ex: _Exporter, n: Node) -> None:
    """Accumulator (already scaled by its representation) plus the bias at its exponent, rounded to ``bits``."""
    out = n.outputs[0]
    x = ex.value(n.inputs[0])
    bias = n.input(2)
    if bias is not None:
        b = _float_of(ex, bias, n.inputs[3])
        if n.inputs[1].name in ex.scales:
            b = _on_grid(ex, b, ex.scales[n.inputs[1].name], bias.name)
        if int(n.attrs.get("bias_axis", -1)) == 1 and len(bias.shape or ()) == 1 and len(out.shape) > 2:
            shape = ex.qb.const(f"{n.name}.bias_shape", np.array([1, -1] + [1] * (len(out.shape) - 2), np.int64))
            b = ex.qb.node("Reshape", [b, shape], f"{bias.name}.bcast")
        x = ex.qb.node("Add", [x, b], f"{out.name}.acc_bias")
    ex.rep[out.name] = requant(ex, x, out.name, int(n.attrs["bits"]), n.outputs[1])


def _operands(ex: _Exporter, n: Node) -> tuple[list[str], dict[str, Any]]:
    """The float ONNX operands and attributes of integer op ``n``'s float twin."""
    op, ins = n.op_type, n.inputs
    attrs: dict[str, Any] = {}
    if op == "IntConcat":
        return [_float_of(ex, ins[i], ins[i + 1]) for i in range(0, len(ins), 2)], {"axis": int(n.attrs["axis"])}
    if op in ("IntAdd", "IntMul", "IntSub"):
        return [_float_of(ex, ins[0], ins[1]), _float_of(ex, ins[2], ins[3])], attrs
    x = _float_of(ex, ins[0], ins[1])
    if op == "IntMaxPool":
        return [x], {k: n.attrs[k] for k in _POOL_ATTRS if n.attrs.get(k) is not None}
    if op == "IntClip":
        bounds = []
        for k in ("min", "max"):
            v = n.attrs.get(k)
            bounds.append("" if v is None else ex.qb.const(f"{n.name}.{k}", np.float32(v)))
        while bounds and bounds[-1] == "":
            bounds.pop()
        return [x, *bounds], attrs
    if op == "IntReduceMean":
        axes = ex.qb.const(f"{n.name}.axes", np.array(list(n.attrs["axes"]), np.int64))
        return [x, axes], {"keepdims": int(n.attrs.get("keepdims", 1))}
    if op == "IntSoftmax":
        return [x], {"axis": int(n.attrs.get("axis", -1))}
    if op == "IntLayerNormalization":
        return [x, _float_of(ex, ins[2], ins[3]), _float_of(ex, ins[4], ins[5])], \
            {"axis": int(n.attrs.get("axis", -1)), "epsilon": float(n.attrs.get("epsilon", 1e-5))}
    if op in ("IntLeakyRelu", "IntHardSigmoid"):
        return [x], {k: float(n.attrs[k]) for k in ("alpha", "beta") if k in n.attrs}
    if op == "IntInstanceNormalization":
        return [x, _float_of(ex, ins[2], ins[3]), _float_of(ex, ins[4], ins[5])], \
            {"epsilon": float(n.attrs.get("epsilon", 1e-5))}
    if op == "IntBatchNormalization":
        return [x, *(_float_of(ex, ins[i], ins[i + 1]) for i in (2, 4, 6, 8))], \
            {"epsilon": float(n.attrs.get("epsilon", 1e-5))}
    return [x], attrs


def emit_integer(ex: _Exporter, n: Node) -> None:
    """The ONNX form of forward integer op ``n`` (see the module docstring)."""
    op, out = n.op_type, n.outputs[0]
    if op == "Requantize":
        return _requantize(ex, n)
    if n.phase != "forward" or op not in INTEGER_FORWARD_OPS:
        raise RctcError(f"export: no ONNX form for rctc op {op} (node {n.name!r}); please report")
    ins, attrs = _operands(ex, n)
    if op in _EXACT:  # the output's exponent is the input's
        ex.rep[out.name] = ex.qb.node(_EXACT[op], ins, f"{out.name}.f", **attrs)
        if n.inputs[1].name in ex.scales:
            ex.scales[n.outputs[1].name] = ex.scales[n.inputs[1].name]
        return None
    y = ex.qb.node(_ROUNDED[op], ins, f"{out.name}.unrounded", **attrs)
    ex.rep[out.name] = requant(ex, y, out.name, int(n.attrs["bits"]), n.outputs[1])
    return None


__all__ = ["INTEGER_FORWARD_OPS", "emit_integer", "product_scale", "requant"]

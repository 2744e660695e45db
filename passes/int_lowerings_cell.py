"""Integer lowerings of the smooth activations, Sub / Neg and the data movement of unrolled
recurrent cells (Sigmoid, Tanh, their gradients, Sub, Neg, Gather with constant indices, Concat,
ConcatGrad): the rules of ``int_lowerings`` (same registry, same contract) for the ops of
rctc/ops/integer_pointwise.py.

Needs: ``rctc.passes.int_lowerings`` (``lowering``, the lowerer's ``int_of`` / ``bits`` /
``rounding`` / ``emit``). Leaves: rules in ``LOWERINGS``; each checks everything before it asks
for an integer form, so a refused node leaves the graph untouched (a float island).

* Sigmoid / Tanh -> IntSigmoid / IntTanh at the activation width. SigmoidGrad / TanhGrad read the
  forward *output* ``y``; their integer twins recompute the activation from the forward *input*
  (what the intref algorithms and the C kernels do), so they are lowered only when the node
  producing ``y`` was lowered, and the backward pass then keeps ``x`` (same width) instead of ``y``.
* Gather with a constant index (scalar or tensor) is a layout op: it runs on the integers of a
  value that has an integer form already, the exponent passing through (exact).
* Concat aligns its inputs (one rounding, exact when they fit); ConcatGrad splits exactly.
* Pad (constant 0, reflect, edge) and nearest Resize are layout ops on the integers (exact);
  PadGrad / nearest ResizeGrad sum exactly in int64 and round once. A non-zero pad constant and
  linear Resize stay float islands (neither is exact on the input's grid).
* InstanceNormalization -> IntInstanceNormalization (BatchNorm's algorithm per sample and
  channel); its gradient when the forward was lowered and dscale / dB only feed updates.
* LeakyRelu, HardSigmoid, HardSwish, Erf, Exp and their gradients (which read the forward
  input) -> their integer twins (intref.pointwise / gelu / expo).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rctc.fixedpoint import int_dtype_for_bits
from rctc.ir import Node
from rctc.passes.int_lowerings import (
    EXP,
    IntPair,
    binary_lowering,
    is_float,
    layout_lowering,
    lowering,
    norm_grad_lowering,
    pairs_of,
)

Rule = Callable[[Any, Node], "list[IntPair] | None"]


def _activation(int_op: str) -> Rule:
    def lower(lz: Any, n: Node) -> list[IntPair] | None:
        x = n.inputs[0]
        if not is_float(x):
            return None
        q, e = lz.int_of(x, n)
        bits = lz.bits(n)
        return pairs_of(lz.emit(n, int_op, [q, e], [(".q", int_dtype_for_bits(bits)), EXP], {"bits": bits}))
    return lower


def _activation_grad(fwd_op: str, int_op: str) -> Rule:
    def lower(lz: Any, n: Node) -> list[IntPair] | None:
        dy, y = n.inputs[0], n.inputs[1]
        fwd = y.producer if y is not None else None
        if not (is_float(dy) and is_float(y) and fwd is not None and fwd.op_type == fwd_op and fwd.name in lz.lowered
                and is_float(fwd.inputs[0])):
            return None
        dq, de = lz.int_of(dy, n)
        q, e = lz.int_of(fwd.inputs[0], fwd)
        bits = lz.bits(n)
        return pairs_of(lz.emit(n, int_op, [dq, de, q, e], [(".q", int_dtype_for_bits(bits)), EXP],
                                {"bits": bits, "rounding": lz.rounding(n)}))
    return lower


lowering("Sigmoid")(_activation("IntSigmoid"))
lowering("Tanh")(_activation("IntTanh"))
lowering("SigmoidGrad")(_activation_grad("Sigmoid", "IntSigmoidGrad"))
lowering("TanhGrad")(_activation_grad("Tanh", "IntTanhGrad"))
lowering("Sub")(binary_lowering("IntSub"))


@lowering("Neg")
def _neg(lz: Any, n: Node) -> list[IntPair] | None:
    if not is_float(n.inputs[0]):
        return None
    q, e = lz.int_of(n.inputs[0], n)
    return pairs_of(lz.emit(n, "IntNeg", [q, e], [(".q", q.dtype), EXP]))


@lowering("Gather")
def _gather(lz: Any, n: Node) -> list[IntPair] | None:
    """A Gather of a float value at constant indices: the layout rule (integers, same exponent)."""
    idx = n.inputs[1]
    if idx is None or idx.kind != "const" or idx.data is None or not np.issubdtype(np.dtype(idx.dtype), np.integer):
        return None
    return layout_lowering(lz, n)


@lowering("Concat")
def _concat(lz: Any, n: Node) -> list[IntPair] | None:
    xs = list(n.inputs)
    if not xs or not all(is_float(x) for x in xs) or len(n.outputs) != 1 or n.attrs.get("axis") is None:
        return None
    ins = []
    for x in xs:
        ins += list(lz.int_of(x, n))
    bits = lz.bits(n)
    axis = int(n.attrs["axis"]) % len(xs[0].shape)
    return pairs_of(lz.emit(n, "IntConcat", ins, [(".q", int_dtype_for_bits(bits)), EXP], {"axis": axis, "bits": bits}))


@lowering("ConcatGrad")
def _concat_grad(lz: Any, n: Node) -> list[IntPair] | None:
    dy = n.inputs[0]
    if not (is_float(dy) and n.outputs and all(is_float(o) for o in n.outputs)):
        return None
    dq, de = lz.int_of(dy, n)
    outs: list[tuple[str, np.dtype]] = []
    for _ in n.outputs:
        outs += [(".q", np.dtype(dq.dtype)), EXP]
    attrs = {"axis": int(n.attrs["axis"]) % len(dy.shape), "split": [int(s) for s in n.attrs["split"]],
             "select": [int(s) for s in n.attrs["select"]]}
    return pairs_of(lz.emit(n, "IntConcatGrad", [dq, de], outs, attrs))


def _const_value(v: Any) -> float | None:
    """A constant's single value (None when absent; NaN when it is not one constant number)."""
    if v is None:
        return None
    if v.kind != "const" or v.data is None or np.asarray(v.data).size > 1:
        return float("nan")
    return float(np.asarray(v.data).reshape(-1)[0]) if np.asarray(v.data).size else None


@lowering("Pad")
def _pad(lz: Any, n: Node) -> list[IntPair] | None:
    """Pad is exact on the integers: constant 0 (any other constant is not on the input's grid),
    reflect and edge gather; the exponent passes through."""
    mode = str(n.attrs.get("mode", "constant"))
    c = _const_value(n.input(2))
    if mode not in ("constant", "reflect", "edge") or (mode == "constant" and c not in (None, 0.0)):
        return None
    return layout_lowering(lz, n)


@lowering("Resize")
def _resize(lz: Any, n: Node) -> list[IntPair] | None:
    """Nearest Resize gathers (every tap weighs 1): exact on the integers. Linear stays float.
    (Its constant float ``scales`` stay: an int64 ``sizes`` would fix the batch dimension of
    the export; the native step, which reads no float tensor, runs this node on the host.)"""
    if str(n.attrs.get("mode", "nearest")) != "nearest":
        return None
    return layout_lowering(lz, n)


def _scatter_grad(int_op: str, keep: tuple[str, ...]) -> Rule:
    def lower(lz: Any, n: Node) -> list[IntPair] | None:
        dy = n.inputs[0]
        if not is_float(dy) or (int_op == "IntResizeGrad" and str(n.attrs.get("mode", "nearest")) != "nearest"):
            return None
        dq, de = lz.int_of(dy, n)
        bits = lz.bits(n)
        attrs = {k: n.attrs[k] for k in keep if k in n.attrs}
        return pairs_of(lz.emit(n, int_op, [dq, de], [(".q", int_dtype_for_bits(bits)), EXP],
                                {**attrs, "bits": bits, "rounding": lz.rounding(n)}))
    return lower


lowering("PadGrad")(_scatter_grad("IntPadGrad", ("mode", "begin", "end")))
lowering("ResizeGrad")(_scatter_grad("IntResizeGrad", ("mode", "coordinate_transformation_mode", "nearest_mode",
                                                         "scales", "input_shape")))


@lowering("InstanceNormalization")
def _instance_norm(lz: Any, n: Node) -> list[IntPair] | None:
    """BatchNorm's integer algorithm per (sample, channel) (intref.instnorm)."""
    x, scale, bias = n.input(0), n.input(1), n.input(2)
    if not (is_float(x) and x is not None and len(x.shape) >= 3 and is_float(scale) and is_float(bias)):
        return None
    q, e = lz.int_of(x, n)
    gq, ge = lz.int_of(scale, n)
    bq, be = lz.int_of(bias, n)
    bits = lz.bits(n)
    return pairs_of(lz.emit(n, "IntInstanceNormalization", [q, e, gq, ge, bq, be],
                            [(".q", int_dtype_for_bits(bits)), EXP],
                            {"epsilon": float(n.attrs.get("epsilon", 1e-5)), "bits": bits}))


@lowering("InstanceNormGrad")
def _instance_norm_grad(lz: Any, n: Node) -> list[IntPair] | None:
    return norm_grad_lowering(lz, n, "InstanceNormalization", "IntInstanceNormGrad",
                      lambda f: {"epsilon": float(f.attrs.get("epsilon", 1e-5))})


# ----- the remaining unary activations: forward at the activation width, the gradient (which
# reads the forward input X) at the error width
def _unary(int_op: str, keep: tuple[str, ...]) -> tuple[Rule, Rule]:
    def attrs(n: Node) -> dict[str, float]:
        return {k: float(n.attrs[k]) for k in keep if k in n.attrs}

    def forward(lz: Any, n: Node) -> list[IntPair] | None:
        x = n.inputs[0]
        if not is_float(x):
            return None
        q, e = lz.int_of(x, n)
        bits = lz.bits(n)
        return pairs_of(lz.emit(n, int_op, [q, e], [(".q", int_dtype_for_bits(bits)), EXP], {**attrs(n), "bits": bits}))

    def backward(lz: Any, n: Node) -> list[IntPair] | None:
        dy, x = n.inputs[0], n.inputs[1]
        if not (is_float(dy) and is_float(x)):
            return None
        dq, de = lz.int_of(dy, n)
        q, e = lz.int_of(x, n)
        bits = lz.bits(n)
        return pairs_of(lz.emit(n, f"{int_op}Grad", [dq, de, q, e], [(".q", int_dtype_for_bits(bits)), EXP],
                                {**attrs(n), "bits": bits, "rounding": lz.rounding(n)}))
    return forward, backward


for _op, _keep in (("LeakyRelu", ("alpha",)), ("HardSigmoid", ("alpha", "beta")), ("HardSwish", ()), ("Erf", ()),
                   ("Exp", ())):
    _f, _b = _unary(f"Int{_op}", _keep)
    lowering(_op)(_f)
    lowering(f"{_op}Grad")(_b)

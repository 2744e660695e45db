"""ONNX building blocks of the export's quantisation (used by ``rctc.export``).

* Activations: ``q = clip(round_half_even(x / 2^e), -qmax, qmax)``, ``qmax = 2^(b-1)-1``, as
  rctc's QuantAct / FakeQuant compute it. In the float format (plain float, no Q/DQ node) this
  is ``Div, Round, Clip, Mul``. In the qdq format, with an int8 or int16 type, it is
  ``Clip -> QuantizeLinear -> DequantizeLinear``: QuantizeLinear rounds half to even
  and saturates to the type's range, which is one wider on the negative side than rctc's
  symmetric range, hence the Clip at ``+-qmax * 2^e`` first (clipping before or after rounding
  gives the same integers since the bounds are integers). Wider activations use the float
  arithmetic too (every step exact for power-of-two scales; ONNX Round is half to even).
* A dynamic exponent (QAT's FakeQuant and untrained rct activations): ``e`` = the smallest
  integer with ``max|x| / 2^e <= qmax``, computed in the graph as ``ceil(log2(max/qmax))`` and
  then corrected by one in either direction with exact power-of-two comparisons (as
  ``rctc.fixedpoint.choose_exponent`` does); ``max|x| == 0`` gives ``e = -(b-1)``.
* Weights (qdq format): integers in the smallest type of their current bits with
  ``DequantizeLinear`` (scale ``2^exp``, zero point 0).
* The qdq format (opset 21) gives QuantizeLinear its type with the ``output_dtype`` attribute
  and omits zero points (0 by default): with an explicit int8 zero-point input, onnxruntime
  1.31's QDQ propagation (DQ -> Reshape / Transpose) inserts a QuantizeLinear that fails type
  inference at opset 21.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper

from rctc.fixedpoint import int_dtype_for_bits, qmax_for_bits


class QuantBuilder:
    """Accumulates nodes and initializers; ``unique`` makes fresh tensor / node names."""

    def __init__(self, unique: Callable[[str], str], fmt: str) -> None:
        self.unique = unique
        self.fmt = fmt
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        #: activation tensor name (``act``'s ``out``) -> the tensor holding its scale 2^e
        self.scale_of: dict[str, str] = {}

    def const(self, base: str, value: np.ndarray | np.generic) -> str:
        name = self.unique(base)
        self.inits[name] = np.asarray(value)
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs: object) -> str:
        out = self.unique(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.unique(f"{base}/{op}"), **attrs))
        return out

    def _named(self, op: str, inputs: list[str], out: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.unique(f"{out}/{op}"), **attrs))
        return out

    def act_dtype(self, bits: int) -> np.dtype | None:
        """The Q/DQ integer type for activations of ``bits`` bits, or None (use float arithmetic).

        The float format has no Q/DQ at all: its activations always use the float arithmetic.
        """
        if self.fmt == "float":
            return None
        if bits <= 8:
            return np.dtype(np.int8)
        if bits <= 16 and self.fmt == "qdq":
            return np.dtype(np.int16)
        return None

    def act(self, x: str, out: str, bits: int, exp: int | None) -> str:
        """Fake-quantise activation ``x`` into tensor ``out`` (static exponent, or from max |x|)."""
        qmax = qmax_for_bits(bits)
        dtype = self.act_dtype(bits)
        scale = self.const(f"{out}.scale", np.float32(math.ldexp(1.0, exp))) if exp is not None \
            else self.dyn_scale(x, bits, out)
        self.scale_of[out] = scale
        if dtype is not None:
            if exp is not None:  # a fixed scale: values beyond the range saturate at +-qmax
                lo = self.const(f"{out}.clip_min", np.float32(-qmax * math.ldexp(1.0, exp)))
                hi = self.const(f"{out}.clip_max", np.float32(qmax * math.ldexp(1.0, exp)))
                x = self.node("Clip", [x, lo, hi], f"{out}.clipped")
            if self.fmt == "qdq":  # opset 21: the type as an attribute, zero point 0 by default
                q = self.node("QuantizeLinear", [x, scale], f"{out}.int",
                              output_dtype=helper.np_dtype_to_tensor_dtype(dtype))
                return self._named("DequantizeLinear", [q, scale], out)
            zp = self.const(f"{out}.zero_point", np.zeros((), dtype))
            q = self.node("QuantizeLinear", [x, scale, zp], f"{out}.int")
            return self._named("DequantizeLinear", [q, scale, zp], out)
        lo = self.const(f"{out}.qmin", np.float32(-qmax))
        hi = self.const(f"{out}.qmax", np.float32(qmax))
        v = self.node("Div", [x, scale], f"{out}.scaled")
        r = self.node("Round", [v], f"{out}.rounded")
        c = self.node("Clip", [r, lo, hi], f"{out}.int")
        return self._named("Mul", [c, scale], out)

    def dyn_scale(self, x: str, bits: int, base: str) -> str:
        """2^e with e = choose_exponent(max|x|, bits), computed in the graph (exact)."""
        qm = self.const(f"{base}.qmax_f", np.float32(qmax_for_bits(bits)))
        two = self.const(f"{base}.two", np.float32(2.0))
        one = self.const(f"{base}.one", np.float32(1.0))
        zero = self.const(f"{base}.zero", np.float32(0.0))
        ln2 = self.const(f"{base}.ln2", np.float32(math.log(2.0)))
        m = self.node("ReduceMax", [self.node("Abs", [x], f"{base}.abs")], f"{base}.absmax", keepdims=0)
        ln = self.node("Log", [self.node("Div", [m, qm], f"{base}.ratio")], f"{base}.ln")
        log2 = self.node("Div", [ln, ln2], f"{base}.log2")
        e0 = self.node("Ceil", [log2], f"{base}.e0")
        # too small: max > qmax * 2^e0 -> e0 + 1
        low = self.node("Greater", [m, self.node("Mul", [qm, self.node("Pow", [two, e0], f"{base}.p0")],
                                                 f"{base}.lim0")], f"{base}.too_small")
        e1 = self.node("Where", [low, self.node("Add", [e0, one], f"{base}.e0p1"), e0], f"{base}.e1")
        # too large: max <= qmax * 2^(e1-1) -> e1 - 1
        e1m1 = self.node("Sub", [e1, one], f"{base}.e1m1")
        high = self.node("LessOrEqual", [m, self.node("Mul", [qm, self.node("Pow", [two, e1m1], f"{base}.p1")],
                                                      f"{base}.lim1")], f"{base}.too_large")
        e2 = self.node("Where", [high, e1m1, e1], f"{base}.exp")
        s = self.node("Pow", [two, e2], f"{base}.pow2")
        empty = self.const(f"{base}.scale_of_zero", np.float32(math.ldexp(1.0, -(bits - 1))))
        is_zero = self.node("Equal", [m, zero], f"{base}.is_zero")
        return self.node("Where", [is_zero, empty, s], f"{base}.scale")

    def dequantize_weight(self, name: str, q: np.ndarray, exp: int, bits: int, out: str) -> tuple[str, str]:
        """Integer weight ``name_quantized`` + ``DequantizeLinear`` (zero point 0) producing float tensor ``out``."""
        dtype = int_dtype_for_bits(bits)
        qi = np.asarray(q).astype(dtype)
        if not np.array_equal(qi, q):
            raise ValueError(f"parameter {name!r} holds values outside its {bits}-bit range")
        qname = self.const(f"{name}_quantized", qi)
        sname = self.const(f"{name}_scale", np.float32(math.ldexp(1.0, exp)))
        self._named("DequantizeLinear", [qname, sname], out)
        return qname, sname

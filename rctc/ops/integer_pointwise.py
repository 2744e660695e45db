"""The integer twins of rct mode's smooth activations, subtraction / negation and the data
movement of unrolled recurrent cells (the ops issue 14's models left as float islands).

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: one definition per integer op, each on ``(q, e)`` pairs (value ``q * 2^e``):

* ``IntSigmoid`` / ``IntTanh`` (i-exp, one rounding) and their backward rules, which recompute
  the activation from the forward *input* (rctc.runtime.intref.expo: the C kernels do the same);
* ``IntSub`` (exponent alignment, one rounding) and ``IntNeg`` (exact: the ranges are symmetric);
* ``IntConcat`` (every input aligned to the finest exponent, one rounding: exact when the
  aligned values fit) and ``IntConcatGrad`` (the error split: exact, same exponent);
* ``IntGatherScatter``: Gather's error scattered back into the data's shape along ``axis``
  (an exact int64 scatter-add, one rounding to ``bits``: exact when the indices are distinct and
  the result fits, the case of an unrolled cell's row slices);
* ``IntPadGrad`` / ``IntResizeGrad`` (nearest): the scatter of PadGrad / ResizeGrad as an exact
  int64 sum, one rounding (Pad and nearest Resize themselves run on the integers as layout ops);
* ``IntInstanceNormalization`` / ``IntInstanceNormGrad``: BatchNorm's integer algorithm with one
  group per (sample, channel) (rctc.runtime.intref.instnorm);
* ``IntLeakyRelu`` / ``IntHardSigmoid`` / ``IntHardSwish`` / ``IntErf`` / ``IntExp`` and their
  ``...Grad`` (intref.pointwise / gelu / expo; the gradient reads the forward input).

The algorithms are the ones of ``rctc.runtime.intref`` (rounding and error bounds stated there);
the numpy kernels are in ``runtime/kernels/int_pointwise.py``, the C emitters in
``native/codegen/emit/int_pointwise.py``.
"""

from __future__ import annotations

from rctc.ops import costs
from rctc.ops.costs import inp
from rctc.ops.schema import ELEMENTWISE, GRADIENT, INTEGER, NEEDS_RNG, definer

_INT = {ELEMENTWISE, INTEGER}
_GRAD = _INT | {GRADIENT, NEEDS_RNG}

op = definer("elementwise", domain="rctc", modes={"rct"}, rct="integer", traits=_INT)
move = definer("layout", domain="rctc", modes={"rct"}, rct="integer", traits=_INT)

# i-exp per element: a floor division, two multiplies and three adds for the polynomial, a
# variable shift; then the reciprocal (a division) and the mirror: counted as 4 mult + 5 add + 1 cmp
op("IntSigmoid", ("q", "e"), outputs=("Y", "Y_e"), attrs={"bits": 8}, cost=costs.per_output(mult=4, add=5, cmp=1),
   c_kernel="rctc_iq_sigmoid", doc="i-exp of -|x|, E / (1 + E) in Q16, mirrored, one nearest rounding")
op("IntSigmoidGrad", ("dq", "de", "q", "e"), outputs=("dX", "dX_e"), attrs={"bits": 8, "rounding": "stochastic"},
   traits=_GRAD, cost=costs.per_output(mult=6, add=6, cmp=1), c_kernel="rctc_iq_sigmoid_backward",
   doc="dy s (1 - s), s recomputed in Q16 from the forward input, one rounding")
op("IntTanh", ("q", "e"), outputs=("Y", "Y_e"), attrs={"bits": 8}, cost=costs.per_output(mult=4, add=5, cmp=2),
   c_kernel="rctc_iq_tanh", doc="i-exp of -2|x|, (1 - E) / (1 + E) in Q16, signed, one nearest rounding")
op("IntTanhGrad", ("dq", "de", "q", "e"), outputs=("dX", "dX_e"), attrs={"bits": 8, "rounding": "stochastic"},
   traits=_GRAD, cost=costs.per_output(mult=6, add=6, cmp=2), c_kernel="rctc_iq_tanh_backward",
   doc="dy (1 - t^2), t recomputed in Q16 from the forward input, one rounding")
op("IntSub", ("qa", "ea", "qb", "eb"), outputs=("Y", "Y_e"), attrs={"bits": 8, "rounding": "nearest"},
   traits=_INT | {NEEDS_RNG}, cost=costs.per_output(add=2, cmp=1), c_kernel="rctc_iq_add",
   doc="exponents aligned by shifts, subtracted exactly, one rounding (stochastic for errors)")
op("IntNeg", ("q", "e"), outputs=("Y", "Y_e"), cost=costs.per_output(add=1), c_kernel="generated loops",
   doc="-q at the same exponent: exact (the symmetric range)")
move("IntConcat", ("*inputs",), outputs=("Y", "Y_e"), attrs={"axis": None, "bits": 8},
     cost=costs.ops(lambda n, i, o: {"cmp": costs.e(o)}), c_kernel="rctc_iq_concat",
     doc="inputs (q0, e0, q1, e1, ...) aligned to the finest exponent, concatenated, one nearest rounding")
move("IntConcatGrad", ("dq", "de"), outputs=("*dinputs",), attrs={"axis": None, "split": None, "select": None},
     traits=_INT | {GRADIENT}, cost=costs.free, c_kernel="generated loops",
     doc="the error's pieces (dX0, e, dX1, e, ...) along axis: exact, the error's exponent")
move("IntGatherScatter", ("dq", "de", "indices"), outputs=("dX", "dX_e"),
     attrs={"table_shape": None, "axis": 0, "bits": 8, "rounding": "stochastic"}, traits=_GRAD,
     cost=costs.ops(lambda n, i, o: {"add": inp(i).size}), c_kernel="generated loops + rctc_iq_requantize",
     doc="Gather's error scattered into the data's shape (int64 sum), one rounding: exact for distinct indices")
move("IntPadGrad", ("dq", "de"), outputs=("dX", "dX_e"),
     attrs={"mode": "constant", "begin": None, "end": None, "bits": 8, "rounding": "stochastic"}, traits=_GRAD,
     cost=costs.ops(lambda n, i, o: {"add": max(inp(i).size - costs.e(o), 0)}),
     c_kernel="generated loops + rctc_iq_requantize",
     doc="PadGrad on the integers: dy summed exactly (int64) onto the positions Pad read, one rounding "
         "(exact for constant padding)")
move("IntResizeGrad", ("dq", "de"), outputs=("dX", "dX_e"),
     attrs={"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor",
            "scales": None, "input_shape": None, "bits": 8, "rounding": "stochastic"}, traits=_GRAD,
     cost=costs.ops(lambda n, i, o: {"add": inp(i).size}), c_kernel="generated loops + rctc_iq_requantize",
     doc="nearest ResizeGrad on the integers: dy summed exactly (int64) onto the positions read, one rounding")

norm = definer("normalisation", domain="rctc", modes={"rct"}, rct="integer", traits={INTEGER})
norm("IntInstanceNormalization", ("q", "e", "scale_q", "scale_e", "B_q", "B_e"), outputs=("Y", "Y_e"),
     attrs={"epsilon": 1e-5, "bits": 8},
     cost=costs.ops(lambda n, i, o: {"add": 4 * costs.e(o), "mult": 3 * costs.e(o)}),
     c_kernel="rctc_iq_batchnorm_train on the (1, B*C, S) view",
     doc="BatchNorm's integer algorithm per (sample, channel): exact sums, fixed-point rsqrt, one rounding")
norm("IntInstanceNormGrad", ("dq", "de", "q", "e", "scale_q", "scale_e"),
     outputs=("dX", "dX_e", "dscale", "dscale_e", "dB", "dB_e"), attrs={"epsilon": 1e-5, "bits": 8,
                                                                       "rounding": "stochastic"},
     traits={INTEGER, GRADIENT, NEEDS_RNG}, cost=costs.ops(lambda n, i, o: {"add": 4 * costs.e(o),
                                                                            "mult": 4 * costs.e(o)}),
     c_kernel="rctc_iq_batchnorm_backward on the (1, B*C, S) view",
     doc="dx at bits; dscale / dB per channel as exact int64 accumulators for the update")

# ----- the remaining unary activations on their intref algorithms (grads read the forward input)
_UNARY = {  # op -> (attrs, forward counts, backward counts, C kernel stem, doc)
    "LeakyRelu": ({"alpha": 0.01}, {"cmp": 1, "mult": 1}, {"cmp": 1, "mult": 1}, "rctc_iq_leaky_relu",
                  "x, or alpha_q x / 2^24 (alpha in Q24) below 0, one rounding"),
    "HardSigmoid": ({"alpha": 0.2, "beta": 0.5}, {"mult": 1, "add": 1, "cmp": 2}, {"mult": 1, "cmp": 2},
                    "rctc_iq_hardsigmoid", "clip(alpha x + beta, 0, 1) exactly (alpha, beta exact ratios), cut "
                    "to 2^-24, one rounding"),
    "HardSwish": ({}, {"mult": 2, "add": 1, "cmp": 2}, {"mult": 2, "add": 1, "cmp": 2}, "rctc_iq_hardswish",
                  "x clip(x + 3, 0, 6) / 6 exactly, cut to 2^-24, one rounding"),
    "Erf": ({}, {"mult": 6, "add": 6, "cmp": 1}, {"mult": 5, "add": 5}, "rctc_iq_erf",
            "A&S 7.1.26 with i-exp in Q16, one rounding (GELU's erf)"),
    "Exp": ({}, {"mult": 3, "add": 4, "cmp": 1}, {"mult": 4, "add": 4, "cmp": 1}, "rctc_iq_exp",
            "i-exp per element aligned to the largest, one rounding"),
}
for _op, (_attrs, _fwd, _bwd, _kernel, _doc) in _UNARY.items():
    op(f"Int{_op}", ("q", "e"), outputs=("Y", "Y_e"), attrs={**_attrs, "bits": 8}, cost=costs.per_output(**_fwd),
       c_kernel=_kernel, doc=_doc)
    op(f"Int{_op}Grad", ("dq", "de", "q", "e"), outputs=("dX", "dX_e"),
       attrs={**_attrs, "bits": 8, "rounding": "stochastic"}, traits=_GRAD, cost=costs.per_output(**_bwd),
       c_kernel=f"{_kernel}_backward", doc="its derivative at the forward input times dy, one rounding")

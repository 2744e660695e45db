"""The integer twins of rct mode's element-wise, pooling and loss ops ("integer from end to end").

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: one definition per integer op the requantise pass emits. Every one works on
``(q, e)`` pairs (an integer tensor and its int32 scalar exponent, value ``q * 2^e``) and
returns ``(q, e)`` pairs, so a value passing between two of them is never a float:

* ``Requantize(acc, acc_e, bias?, bias_e?)``: an integer product's accumulator (plus a bias
  brought to the accumulator's exponent first) to ``bits``, exponent from the batch max;
* ``IntRelu`` / ``IntMaxPool`` (exact), ``IntAdd`` (exponent alignment, one rounding),
  ``IntGlobalAveragePool`` (integer sum times a fixed-point reciprocal), and their backward
  rules ``IntReluGrad`` / ``IntMaxPoolGrad`` / ``IntAddGrad`` / ``IntGlobalAveragePoolGrad``;
* ``IntReduceSum``: an error summed exactly to a bias gradient (an int64 accumulator);
* ``IntSoftmaxCrossEntropy`` (the loss as a Q16 integer) and ``IntSoftmaxCrossEntropyGrad``
  (``(softmax - onehot) / B`` as an error at ``bits``).

The algorithms are the ones of ``rctc.runtime.intref`` (their rounding and error bounds are
stated there and in docs/numerics.md); the kernels in ``runtime/kernels/int_elementwise.py``
call them. Backward rules round stochastically (``rounding``) and draw their random words
from the kernel context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rctc.ops import costs
from rctc.ops.costs import channels, e, inp, kernel_size
from rctc.ops.schema import ELEMENTWISE, GRADIENT, INTEGER, NEEDS_RNG, QUANTISE, definer

_INT = {ELEMENTWISE, INTEGER}
_POOL = {"auto_pad": "NOTSET", "ceil_mode": 0, "kernel_shape": None, "pads": None, "strides": None}

op = definer("elementwise", domain="rctc", modes={"rct"}, rct="integer", traits=_INT)
pool = definer("pooling", domain="rctc", modes={"rct"}, rct="integer", traits=_INT)
loss = definer("loss", domain="rctc", modes={"rct"}, rct="integer", traits=_INT)


def _requantize_cost(node: Any, ins: Sequence[Any], outs: Sequence[Any], counts: Any, fq: Any = None) -> None:
    """absmax (one compare per element), the rounding add and the shift at the accumulator's width,
    and the bias add when there is one."""
    acc = inp(ins)
    n = acc.size
    counts.add_op("cmp", acc.width, n)
    counts.add_op("add", acc.width, n * (2 if len(ins) > 2 and ins[2] is not None else 1))


op("Requantize", ("acc", "acc_e", "bias?", "bias_e?"), outputs=("q", "e"),
   attrs={"bits": 8, "rounding": "nearest", "bias_axis": -1},
   traits=_INT | {QUANTISE, NEEDS_RNG}, cost=_requantize_cost,
   c_kernel="rctc_iq_requantize",
   doc="accumulator (+ bias at its exponent) to bits, exponent from the batch max")
op("IntRelu", ("q", "e"), outputs=("Y", "Y_e"), cost=costs.per_output(cmp=1), c_kernel="rctc_iq_relu",
   doc="max(q, 0): exact")
op("IntReluGrad", ("dq", "de", "q", "e"), outputs=("dX", "dX_e"), traits=_INT | {GRADIENT},
   cost=costs.per_output(cmp=1), c_kernel="rctc_iq_relu_backward", doc="dy where x > 0: exact")
op("IntAdd", ("qa", "ea", "qb", "eb"), outputs=("Y", "Y_e"), attrs={"bits": 8, "rounding": "nearest"},
   traits=_INT | {NEEDS_RNG}, cost=costs.per_output(add=2, cmp=1),
   c_kernel="rctc_iq_add", doc="exponents aligned by shifts, summed exactly, one rounding (stochastic for errors)")
op("IntAddGrad", ("dq", "de"), outputs=("dA", "dA_e"), attrs={"shape": None, "bits": 8, "rounding": "stochastic"},
   traits=_INT | {GRADIENT, NEEDS_RNG}, cost=costs.ops(lambda n, i, o: {"add": inp(i).size}),
   c_kernel="rctc_iq_reduce_to",
   doc="the error summed exactly over broadcast axes to one operand's shape, one rounding")
op("IntReduceSum", ("dq", "de"), outputs=("acc", "acc_e"), attrs={"axes": None, "shape": None},
   traits=_INT | {GRADIENT}, cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o)}),
   c_kernel="generated loops",
   doc="an error summed exactly (int64) over axes to shape: a bias gradient for the update")
pool("IntMaxPool", ("q", "e"), outputs=("Y", "Y_e"), attrs=_POOL,
     cost=costs.ops(lambda n, i, o: {"cmp": e(o) * (kernel_size(n) - 1)}), c_kernel="rctc_iq_maxpool2d",
     doc="window maximum: exact")
pool("IntMaxPoolGrad", ("dq", "de", "q", "e"), outputs=("dX", "dX_e"),
     attrs={**_POOL, "bits": 8, "rounding": "stochastic"}, traits=_INT | {GRADIENT, NEEDS_RNG},
     cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size * (kernel_size(n) - 1), "add": inp(i).size}),
     c_kernel="rctc_iq_maxpool2d_backward",
     doc="dy scattered to each window's first maximum, exact sum, one rounding")
pool("IntGlobalAveragePool", ("q", "e"), outputs=("Y", "Y_e"), attrs={"bits": 8},
     cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o), "mult": e(o)}), c_kernel="rctc_iq_reduce_mean",
     doc="exact integer sum times a Q32 reciprocal, one nearest rounding")
pool("IntGlobalAveragePoolGrad", ("dq", "de"), outputs=("dX", "dX_e"),
     attrs={"input_shape": None, "bits": 8, "rounding": "stochastic"}, traits=_INT | {GRADIENT, NEEDS_RNG},
     cost=costs.per_output(mult=1), c_kernel="rctc_iq_reduce_mean_backward",
     doc="dy times the Q32 reciprocal at every input position, one rounding")
loss("IntSoftmaxCrossEntropy", ("q", "e", "labels", "mask"), outputs=("loss", "loss_e"),
     cost=costs.ops(lambda n, i, o: {"cmp": inp(i).size, "add": 2 * inp(i).size, "mult": 2 * inp(i).size}),
     c_kernel="rctc_iq_softmax_cross_entropy",
     doc="mean -log softmax at the label over the rows the uint8 0/1 mask keeps, Q16 (i-exp, integer log2)")
loss("IntSoftmaxCrossEntropyGrad", ("q", "e", "labels", "mask"), outputs=("dX", "dX_e"),
     attrs={"bits": 8, "rounding": "stochastic"}, traits=_INT | {GRADIENT, NEEDS_RNG},
     cost=costs.per_output(mult=2, add=2), c_kernel="rctc_iq_softmax_cross_entropy_backward",
     doc="(softmax - onehot) / B as an error at bits on the kept rows (B their count), 0 elsewhere")
op("IntClip", ("q", "e"), outputs=("Y", "Y_e"), attrs={"min": None, "max": None}, cost=costs.per_output(cmp=2),
   c_kernel="rctc_iq_clip", doc="clip to bounds quantised inward to the input's grid: exact (ReLU6)")
op("IntClipGrad", ("dq", "de", "q", "e"), outputs=("dX", "dX_e"), attrs={"min": None, "max": None},
   traits=_INT | {GRADIENT}, cost=costs.per_output(cmp=2),
   c_kernel="rctc_iq_clip_backward", doc="dy where lo <= x <= hi: exact")

norm = definer("normalisation", domain="rctc", modes={"rct"}, rct="integer", traits={INTEGER})
norm("IntBatchNormalization", ("q", "e", "scale_q", "scale_e", "B_q", "B_e", "mean_q", "mean_e", "var_q", "var_e"),
     outputs=("Y", "Y_e", "mean_q_new", "mean_e_new", "var_q_new", "var_e_new"),
     attrs={"epsilon": 1e-5, "momentum": 0.9, "bits": 8},
     cost=costs.ops(lambda n, i, o: {"add": 4 * e(o), "mult": 3 * e(o), "special": channels(o[0])}),
     c_kernel="rctc_iq_batchnorm_train",
     doc="training: batch statistics from exact integer sums, fixed-point rsqrt, running statistics as "
         "16-bit integer state; inference: the running statistics")
norm("IntBatchNormGrad", ("dq", "de", "q", "e", "scale_q", "scale_e"),
     outputs=("dX", "dX_e", "dscale", "dscale_e", "dB", "dB_e"),
     attrs={"epsilon": 1e-5, "bits": 8, "rounding": "stochastic"}, traits={INTEGER, GRADIENT, NEEDS_RNG},
     cost=costs.ops(lambda n, i, o: {"add": 4 * e(o), "mult": 4 * e(o) + 2 * channels(o[0])}),
     c_kernel="rctc_iq_batchnorm_backward", doc="dx at bits; dscale / dB as exact int64 accumulators for the update")
norm("IntLayerNormalization", ("q", "e", "scale_q", "scale_e", "B_q", "B_e"), outputs=("Y", "Y_e"),
     attrs={"axis": -1, "epsilon": 1e-5, "bits": 8},
     cost=costs.ops(lambda n, i, o: {"add": 4 * e(o), "mult": 3 * e(o)}),
     c_kernel="rctc_iq_layernorm", doc="exact integer sums per row, fixed-point rsqrt, one rounding")
norm("IntLayerNormGrad", ("dq", "de", "q", "e", "scale_q", "scale_e"),
     outputs=("dX", "dX_e", "dscale", "dscale_e", "dB", "dB_e"),
     attrs={"axis": -1, "epsilon": 1e-5, "bits": 8, "rounding": "stochastic"}, traits={INTEGER, GRADIENT, NEEDS_RNG},
     cost=costs.per_output(add=4, mult=4),
     c_kernel="rctc_iq_layernorm_backward", doc="dx at bits; dscale / dB as exact int64 accumulators")
norm("IntSoftmax", ("q", "e"), outputs=("Y", "Y_e"), attrs={"axis": -1, "bits": 8}, traits=_INT,
     cost=costs.per_output(cmp=1, add=2, mult=2),
     c_kernel="rctc_iq_softmax", doc="i-exp numerators times a fixed-point reciprocal of their sum")
norm("IntSoftmaxGrad", ("dq", "de", "qy", "ey"), outputs=("dX", "dX_e"),
     attrs={"axis": -1, "bits": 8, "rounding": "stochastic"}, traits=_INT | {GRADIENT, NEEDS_RNG},
     cost=costs.per_output(mult=2, add=2),
     c_kernel="rctc_iq_softmax_backward", doc="y (dy - sum(dy y)): exact sums and products, one rounding")
op("IntMul", ("qa", "ea", "qb", "eb"), outputs=("Y", "Y_e"), attrs={"bits": 8, "rounding": "nearest"},
   traits=_INT | {NEEDS_RNG}, cost=costs.per_output(mult=1, cmp=1),
   c_kernel="rctc_iq_mul", doc="exact product, one rounding")
pool("IntReduceMean", ("q", "e"), outputs=("Y", "Y_e"), attrs={"axes": None, "keepdims": 1, "bits": 8},
     cost=costs.ops(lambda n, i, o: {"add": inp(i).size - e(o), "mult": e(o)}),
     c_kernel="rctc_iq_reduce_mean", doc="exact integer sum times a Q32 reciprocal, one rounding")
pool("IntReduceMeanGrad", ("dq", "de"), outputs=("dX", "dX_e"),
     attrs={"shape": None, "axes": None, "keepdims": 1, "bits": 8, "rounding": "stochastic"},
     traits=_INT | {GRADIENT, NEEDS_RNG}, cost=costs.per_output(mult=1),
     c_kernel="rctc_iq_reduce_mean_backward", doc="dy times the Q32 reciprocal at every input position, one rounding")
op("IntGatherGrad", ("dq", "de", "indices"), outputs=("acc", "acc_e"), attrs={"table_shape": None},
   traits=_INT | {GRADIENT}, cost=costs.ops(lambda n, i, o: {"add": inp(i).size}),
   c_kernel="generated loops",
   doc="an embedding's error rows added exactly (int64) into the table's shape, for the update")

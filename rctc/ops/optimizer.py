"""Parameter updates: SGD, momentum and AdamW in float (fp32 / qat), their integer forms on the
parameter's integers (rct; AdamW with integer moments) and the fused forms that consume the
weight-gradient product.

Needs: rctc.ops.schema, rctc.ops.costs.
Leaves: the definitions; ``fused_twin`` names the form fuse_updates turns an integer update
into when the gradient is a single integer product, ``acc_twin`` the form it takes (integer
graphs) when the gradient is an integer accumulator with its exponent (a bias or a
normalisation's scale / shift gradient): then no float gradient is a graph value. The integer
updates report Gavg (mean |update| in last-bit units, for the bitwidth controller) through the
kernel's step stats.
"""

from __future__ import annotations

from rctc.ops import costs
from rctc.ops.costs import e
from rctc.ops.schema import INTEGER, NEEDS_RNG, UPDATE, definer

op = definer("optimizer", domain="rctc", traits={UPDATE}, modes={"fp32", "qat"}, rct=None)
iop = definer("optimizer", domain="rctc", traits={UPDATE, INTEGER, NEEDS_RNG}, modes={"rct"}, rct="integer")


def _wd(n: object) -> int:
    return 1 if n.attrs.get("weight_decay") else 0  # type: ignore[attr-defined]


op("SGDUpdate", ("W", "G", "lr"), outputs=("W_new",), attrs={"weight_decay": 0.0},
   cost=costs.ops(lambda n, i, o: {k: e(o) * (1 + _wd(n)) for k in ("add", "mult")}))
op("MomentumUpdate", ("W", "G", "V", "lr"), outputs=("W_new", "V_new"), attrs={"momentum": 0.9, "weight_decay": 0.0},
   cost=costs.ops(lambda n, i, o: {k: e(o) * (2 + _wd(n)) for k in ("add", "mult")}))
# AdamW per element: 2 moment updates (3 mult, 2 add), the step (2 mult, 1 add), the decay (1 mult);
# the square root and the division are special
op("AdamWUpdate", ("W", "G", "M", "V", "t", "lr"), outputs=("W_new", "M_new", "V_new", "t_new"),
   attrs={"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.01},
   cost=costs.ops(lambda n, i, o: {"mult": e(o) * (5 + _wd(n)), "add": 3 * e(o), "special": 2 * e(o)}))
iop("IntSGDUpdate", ("q", "e", "bits", "G", "lr"), outputs=("q_new",),
    attrs={"rounding": "stochastic", "weight_decay": 0.0}, fused_twin="FusedIntUpdate", acc_twin="IntAccSGDUpdate",
    cost=costs.int_update)
iop("IntMomentumUpdate", ("q", "e", "bits", "G", "vq", "ve", "lr"), outputs=("q_new", "vq_new", "ve_new"),
    attrs={"momentum": 0.9, "rounding": "stochastic", "velocity_bits": 16, "weight_decay": 0.0},
    fused_twin="FusedIntMomentumUpdate", acc_twin="IntAccMomentumUpdate", cost=costs.int_momentum_update)
iop("IntAccSGDUpdate", ("q", "e", "bits", "gq", "ge", "lr"), outputs=("q_new",),
    attrs={"alpha": 1.0, "rounding": "stochastic", "weight_decay": 0.0}, cost=costs.int_update,
    c_kernel="rctc_sgd_update_fused",
    doc="update from an integer gradient accumulator gq * 2^ge: FusedIntUpdate's arithmetic, no float gradient")
iop("IntAccMomentumUpdate", ("q", "e", "bits", "gq", "ge", "vq", "ve", "lr"), outputs=("q_new", "vq_new", "ve_new"),
    attrs={"alpha": 1.0, "momentum": 0.9, "rounding": "stochastic", "velocity_bits": 16, "weight_decay": 0.0},
    cost=costs.int_momentum_update, c_kernel="rctc_momentum_update",
    doc="IntMomentumUpdate of an integer gradient accumulator, scaled inside the kernel (no float graph value)")
iop("FusedIntUpdate", ("q", "e", "bits", "qA", "eA", "qB", "eB", "lr"), outputs=("q_new",),
    attrs={"product": None, "alpha": 1.0, "transpose": [], "rounding": "stochastic", "weight_decay": 0.0},
    cost=costs.fused_update(momentum=False), c_kernel="rctc_sgd_update_fused",
    doc="weight-gradient product + update, no float gradient")
iop("FusedIntMomentumUpdate", ("q", "e", "bits", "qA", "eA", "qB", "eB", "vq", "ve", "lr"),
    outputs=("q_new", "vq_new", "ve_new"),
    attrs={"product": None, "alpha": 1.0, "momentum": 0.9, "transpose": [], "rounding": "stochastic",
           "velocity_bits": 16, "weight_decay": 0.0},
    cost=costs.fused_update(momentum=True), c_kernel="rctc_momentum_update",
    doc="weight-gradient product + momentum SGD on an integer velocity, no float gradient")
# AdamW on integer state (docs/numerics.md "AdamW in rct mode"): m int32 + exponent, v int32 (>= 0) + exponent,
# the int64 step count; the step stochastically rounded onto q (draws 0 / 1 / 2: m, v, q)
_ADAMW = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.01, "rounding": "stochastic"}
_ADAMW_OUT = ("q_new", "mq_new", "me_new", "vq_new", "ve_new", "t_new")
iop("IntAdamWUpdate", ("q", "e", "bits", "G", "mq", "me", "vq", "ve", "t", "lr"), outputs=_ADAMW_OUT,
    attrs=dict(_ADAMW), fused_twin="FusedIntAdamWUpdate", acc_twin="IntAccAdamWUpdate", cost=costs.int_adamw_update,
    doc="AdamW with integer moments from a float gradient (rounded to 22 bits first)")
iop("IntAccAdamWUpdate", ("q", "e", "bits", "gq", "ge", "mq", "me", "vq", "ve", "t", "lr"), outputs=_ADAMW_OUT,
    attrs={**_ADAMW, "alpha": 1.0}, cost=costs.int_adamw_update, c_kernel="rctc_adamw_update",
    doc="AdamW with integer moments from an integer gradient accumulator gq * 2^ge (no float gradient)")
iop("FusedIntAdamWUpdate", ("q", "e", "bits", "qA", "eA", "qB", "eB", "mq", "me", "vq", "ve", "t", "lr"),
    outputs=_ADAMW_OUT, attrs={**_ADAMW, "product": None, "alpha": 1.0, "transpose": []},
    cost=costs.fused_adamw_update, c_kernel="rctc_adamw_update",
    doc="weight-gradient product + AdamW with integer moments, no float gradient")

"""add_optimizer: parameter updates as IR nodes.

Needs: ``graph.meta["param_grads"]`` (from build_backward).
Leaves: a scalar float32 graph input ``lr`` (so schedules run at train time); per trainable
parameter one update node (``SGDUpdate``, or ``MomentumUpdate`` with a zero-initialised
velocity buffer ``<param>.momentum``, or ``AdamWUpdate`` with zero-initialised moments
``<param>.exp_avg`` / ``<param>.exp_avg_sq`` and an int64 step count ``<param>.step``), with
``graph.state_updates`` mapping the parameter (and its state) to the updated value. PyTorch
semantics: SGD g += wd * w; v = mu * v + g; w -= lr * v. AdamW as torch.optim.AdamW (in rct
mode assign_slots turns it into ``IntAdamWUpdate`` with integer moments, docs/numerics.md).
"""

from __future__ import annotations

import numpy as np

from rctc.ir import OPTIMIZER_STATE, Graph, Role
from rctc.options import CompileOptions


def run(g: Graph, options: CompileOptions) -> None:
    lr = g.add_input("lr", (), np.float32)
    g.meta["lr_input"] = lr.name
    g.meta["optimizer"] = options.update_rule
    for pname, gname in g.meta["param_grads"].items():
        p, grad = g.value(pname), g.value(gname)
        attrs = {"weight_decay": options.decay}
        if options.update_rule == "adamw":
            state = [g.add_value(f"{pname}.{k}", p.shape, p.dtype, "buffer", np.zeros(p.shape, p.dtype))
                     for k in ("exp_avg", "exp_avg_sq")]
            state.append(g.add_value(f"{pname}.step", (), np.int64, "buffer", np.array(0, np.int64)))
            beta1, beta2 = options.adam_betas
            attrs.update({"beta1": float(beta1), "beta2": float(beta2), "epsilon": float(options.adam_eps)})
            outs = [(f"{v.name}.new", v.shape, v.dtype) for v in (p, *state)]
            node = g.add_node("AdamWUpdate", [p, grad, *state, lr], outs, attrs, name=f"{pname}/update",
                              domain="rctc")
            for v, out in zip(state, node.outputs[1:]):
                g.state_updates[v.name] = out.name
        elif options.update_rule == "momentum":
            vel = g.add_value(f"{pname}.momentum", p.shape, np.float32, "buffer", np.zeros(p.shape, np.float32))
            vel.role = Role(OPTIMIZER_STATE, pname)
            attrs["momentum"] = options.momentum_factor
            node = g.add_node("MomentumUpdate", [p, grad, vel, lr],
                              [(f"{pname}.new", p.shape, p.dtype), (f"{vel.name}.new", vel.shape, vel.dtype)],
                              attrs, name=f"{pname}/update", domain="rctc")
            g.state_updates[vel.name] = node.outputs[1].name
        else:
            node = g.add_node("SGDUpdate", [p, grad, lr], [(f"{pname}.new", p.shape, p.dtype)], attrs,
                              name=f"{pname}/update", domain="rctc")
        node.meta.update({"phase": "update", "param": pname})
        g.state_updates[pname] = node.outputs[0].name

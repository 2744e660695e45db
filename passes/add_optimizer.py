"""add_optimizer: parameter updates as IR nodes.

Needs: ``graph.meta["param_grads"]`` (from build_backward).
Leaves: a scalar float32 graph input ``lr`` (so schedules run at train time); per trainable
parameter one update node (``SGDUpdate``, or ``MomentumUpdate`` with a zero-initialised
velocity buffer ``<param>.momentum``), with ``graph.state_updates`` mapping the parameter
(and velocity) to the updated value. PyTorch semantics: g += wd * w; v = mu * v + g; w -= lr * v.
"""

from __future__ import annotations

import numpy as np

from rctc.ir import OPTIMIZER_STATE, Graph, Role
from rctc.options import CompileOptions


def run(g: Graph, options: CompileOptions) -> None:
    lr = g.add_input("lr", (), np.float32)
    g.meta["lr_input"] = lr.name
    g.meta["optimizer"] = options.optimizer
    for pname, gname in g.meta["param_grads"].items():
        p, grad = g.value(pname), g.value(gname)
        attrs = {"weight_decay": float(options.weight_decay)}
        if options.optimizer == "momentum":
            vel = g.add_value(f"{pname}.momentum", p.shape, np.float32, "buffer", np.zeros(p.shape, np.float32))
            vel.role = Role(OPTIMIZER_STATE, pname)
            attrs["momentum"] = float(options.momentum)
            node = g.add_node("MomentumUpdate", [p, grad, vel, lr],
                              [(f"{pname}.new", p.shape, p.dtype), (f"{vel.name}.new", vel.shape, vel.dtype)],
                              attrs, name=f"{pname}/update", domain="rctc")
            g.state_updates[vel.name] = node.outputs[1].name
        else:
            node = g.add_node("SGDUpdate", [p, grad, lr], [(f"{pname}.new", p.shape, p.dtype)], attrs,
                              name=f"{pname}/update", domain="rctc")
        node.meta.update({"phase": "update", "param": pname})
        g.state_updates[pname] = node.outputs[0].name
